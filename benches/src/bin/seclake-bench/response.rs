//! `seclake-bench response`: how fast an attacker ends up blocked.
//!
//! `seclake run` consumes a Kafka topic into the lake with `[response]` on
//! an IP set and a block table (moto's WAFv2 and DynamoDB). This process
//! produces a steady stream of fixture WAF traffic into the topic and, once
//! the pipeline has warmed up, one attacking record (a blocked SQL injection
//! by sqlmap: critical) from each of `--attackers` new addresses, one every
//! `--attack-every-ms`. A poller reads the IP set (`GetIPSet`) every
//! `--poll-ms`; an attacker's latency is from its record's hand-off to the
//! producer to the first answer that holds its address. Goal: p99 under 1 s.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail, ensure};
use aws_sdk_wafv2::types::{IpAddressVersion, Scope};
use clap::Args;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, Producer as _, ThreadedProducer};
use seclake_benches::{SEED, bench_date};
use seclake_fixtures::services::unique_name;
use seclake_sink::response::{IpSet, IpSetState};
use serde_json::{Value, json};

use super::opensearch::{BenchTopic, Deliveries, kafka_config, quantile, scrape};
use super::{
    Killed, default_data_root, free_port, last_lines, seclake_binary, send_signal, toml_str,
};

/// Fixture lines cycled as background traffic.
const POOL: usize = 50_000;

#[derive(Args)]
pub(crate) struct ResponseArgs {
    /// Kafka brokers.
    #[arg(long, env = "SECLAKE_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// The WAFv2 and DynamoDB endpoint (moto's).
    #[arg(long, default_value = "http://127.0.0.1:5000")]
    aws_endpoint: String,
    /// Background records per second.
    #[arg(long, default_value_t = 20_000.0)]
    rate: f64,
    /// Seconds of background traffic before the first attacker.
    #[arg(long, default_value_t = 15)]
    warmup_secs: u64,
    /// Attacking addresses, one record each.
    #[arg(long, default_value_t = 100)]
    attackers: u32,
    /// Milliseconds between two attackers.
    #[arg(long, default_value_t = 1000)]
    attack_every_ms: u64,
    /// Milliseconds between two reads of the IP set.
    #[arg(long, default_value_t = 50)]
    poll_ms: u64,
    /// The Kafka source's `linger_ms` [default: seclake's, 200 ms].
    #[arg(long)]
    linger_ms: Option<u64>,
    /// `[response] update_interval` [default: seclake's, 1 s].
    #[arg(long)]
    update_interval: Option<String>,
    /// The seclake binary [default: `seclake` beside this program].
    #[arg(long, env = "SECLAKE_BIN")]
    seclake: Option<PathBuf>,
    /// Where the run's lake and logs go [default: $HOME/.cache/seclake/bench-data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

pub(crate) fn response(args: &ResponseArgs) -> Result<bool> {
    ensure!(args.rate >= 1.0, "--rate must be at least 1");
    ensure!(args.attackers >= 1, "--attackers must be at least 1");
    let seclake = seclake_binary(args.seclake.as_deref())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let aws = Aws::new(&args.aws_endpoint);
    let set_name = unique_name("sbench-blocked");
    let set_id = rt.block_on(aws.create_set(&set_name))?;
    let table = unique_name("sbench-blocks");
    rt.block_on(aws.create_table(&table))?;
    let topic = unique_name("seclake-bench-response");
    let bench_topic = BenchTopic::create(&rt, &args.brokers, &topic, args.partitions)?;
    let outcome = measure(
        args, &seclake, &rt, &aws, &set_name, &set_id, &table, &topic,
    );
    bench_topic.delete(&rt);
    let _ = rt.block_on(aws.delete_set(&set_name, &set_id));
    let _ = rt.block_on(aws.delete_table(&table));
    outcome
}

#[allow(clippy::too_many_arguments)]
fn measure(
    args: &ResponseArgs,
    seclake: &std::path::Path,
    rt: &tokio::runtime::Runtime,
    aws: &Aws,
    set_name: &str,
    set_id: &str,
    table: &str,
    topic: &str,
) -> Result<bool> {
    let root_dir = match &args.data_dir {
        Some(d) => d.clone(),
        None => default_data_root()?,
    };
    fs::create_dir_all(&root_dir)?;
    let run_dir = tempfile::Builder::new()
        .prefix("response-")
        .tempdir_in(&root_dir)?;
    let root = run_dir.path();
    let metrics_port = free_port()?;
    let group = unique_name("seclake-bench-response");
    let mut config = format!(
        "[[source]]\ntype = \"kafka\"\nformat = \"waf\"\nbrokers = {}\ntopic = {}\ngroup = {}\n\n",
        toml_str(&args.brokers),
        toml_str(topic),
        toml_str(&group)
    );
    if let Some(linger) = args.linger_ms {
        let _ = writeln!(config, "linger_ms = {linger}\n");
    }
    for section in ["lake", "dlq"] {
        fs::create_dir_all(root.join(section))?;
        let url = format!("file://{}", root.join(section).to_string_lossy());
        let _ = write!(config, "[{section}]\nurl = {}\n\n", toml_str(&url));
    }
    let _ = write!(
        config,
        "[response]\nip_set_name = {}\nip_set_id = {}\nscope = \"REGIONAL\"\nregion = \"us-east-1\"\n\
         endpoint = {e}\nstate_table = {}\nstate_endpoint = {e}\n\
         # The fixture's own attackers are blocked too; none may wait for the budget.\n\
         max_blocks_per_minute = 100000\n",
        toml_str(set_name),
        toml_str(set_id),
        toml_str(table),
        e = toml_str(&args.aws_endpoint),
    );
    if let Some(interval) = &args.update_interval {
        let _ = writeln!(config, "update_interval = {}", toml_str(interval));
    }
    let _ = write!(
        config,
        "\n[metrics]\naddress = \"127.0.0.1:{metrics_port}\"\n"
    );
    fs::write(root.join("seclake.toml"), &config)?;
    let stderr = root.join("stderr.log");
    let child = Command::new(seclake)
        .arg("run")
        .arg("--config")
        .arg(root.join("seclake.toml"))
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .stdin(Stdio::null())
        .stdout(File::create(root.join("stdout.log"))?)
        .stderr(File::create(&stderr)?)
        .spawn()
        .context("starting seclake")?;
    let mut child = Killed(child);
    let deadline = Instant::now() + Duration::from_secs(90);
    while scrape(metrics_port, "seclake_kafka_assigned_partitions").unwrap_or(0.0)
        < f64::from(args.partitions)
    {
        if let Some(status) = child.0.try_wait()? {
            bail!(
                "seclake exited ({status}) before it was assigned the topic:\n{}",
                last_lines(&stderr, 20)
            );
        }
        ensure!(
            Instant::now() < deadline,
            "seclake was not assigned all {} partitions of {topic} within 90 s",
            args.partitions
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let pool = background_pool()?;
    let attack = attack_template(&pool)?;
    let attackers: Vec<Ipv4Addr> = (0..args.attackers)
        .map(|i| Ipv4Addr::new(198, 18, (i >> 8) as u8, (i & 0xff) as u8))
        .collect();
    println!(
        "response: seclake consumes {topic} ({} partitions) into the lake and IP set {set_name} (moto); \
         {}/s of fixture WAF traffic, {} s warm-up, then {} attackers {} ms apart; GetIPSet every {} ms",
        args.partitions,
        args.rate,
        args.warmup_secs,
        args.attackers,
        args.attack_every_ms,
        args.poll_ms
    );

    let mut producer_config = kafka_config(&args.brokers);
    producer_config
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("compression.type", "lz4")
        .set("sticky.partitioning.linger.ms", "0");
    let producer: ThreadedProducer<Deliveries> = producer_config
        .create_with_context(Deliveries::default())
        .context("creating the Kafka producer")?;
    let done = Arc::new(AtomicBool::new(false));
    let records_before = scrape(metrics_port, "seclake_kafka_records_total").unwrap_or(0.0);
    let producer_thread = {
        let (topic, done, attackers) = (topic.to_owned(), Arc::clone(&done), attackers.clone());
        let plan = Plan {
            rate: args.rate,
            warmup: Duration::from_secs(args.warmup_secs),
            every: Duration::from_millis(args.attack_every_ms),
        };
        std::thread::Builder::new()
            .name("bench-producer".into())
            .spawn(move || {
                let sent = produce(&producer, &topic, &pool, &attack, &attackers, &plan);
                done.store(true, Ordering::Release);
                sent
            })?
    };

    // The poller: the first answer holding each attacker.
    let wanted: HashMap<String, usize> = attackers
        .iter()
        .enumerate()
        .map(|(i, ip)| (format!("{ip}/32"), i))
        .collect();
    let mut found: Vec<Option<Instant>> = vec![None; attackers.len()];
    let mut polls = 0u64;
    let mut poll_secs = 0.0;
    let mut finished_at: Option<Instant> = None;
    loop {
        let asked = Instant::now();
        let addresses = rt.block_on(aws.addresses(set_name, set_id))?;
        let answered = Instant::now();
        polls += 1;
        poll_secs += (answered - asked).as_secs_f64();
        for address in &addresses {
            if let Some(&i) = wanted.get(address) {
                found[i].get_or_insert(answered);
            }
        }
        if found.iter().all(Option::is_some) {
            break;
        }
        if done.load(Ordering::Acquire) {
            let since = *finished_at.get_or_insert(answered);
            if since.elapsed() > Duration::from_secs(15) {
                break;
            }
        }
        let next = asked + Duration::from_millis(args.poll_ms);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let sent = producer_thread
        .join()
        .map_err(|_| anyhow::anyhow!("the producer thread panicked"))??;
    let records =
        scrape(metrics_port, "seclake_kafka_records_total").unwrap_or(0.0) - records_before;
    let updates = scrape(metrics_port, "seclake_response_ip_set_updates_total").unwrap_or(0.0);
    let conflicts = scrape(metrics_port, "seclake_response_ip_set_conflicts_total").unwrap_or(0.0);
    let skipped = scrape(metrics_port, "seclake_sink_skipped_batches_total").unwrap_or(0.0);
    let errors = scrape(metrics_port, "seclake_response_errors_total").unwrap_or(0.0);
    let applied_ms = scrape(metrics_port, "seclake_response_block_seconds_sum").unwrap_or(f64::NAN)
        * 1000.0
        / scrape(metrics_port, "seclake_response_block_seconds_count").unwrap_or(f64::NAN);
    send_signal(child.0.id(), libc::SIGTERM)?;
    let stop_deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.0.try_wait()? {
            break status;
        }
        ensure!(
            Instant::now() < stop_deadline,
            "seclake did not stop within 120 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    if !status.success() {
        println!(
            "seclake exited with {status}; last lines of its stderr:\n{}",
            last_lines(&stderr, 20)
        );
    }

    let mut latency: Vec<f64> = found
        .iter()
        .zip(&sent.attacks)
        .filter_map(|(seen, sent)| Some((*seen)?.duration_since((*sent)?).as_secs_f64() * 1000.0))
        .collect();
    latency.sort_by(f64::total_cmp);
    let missing = attackers.len() - latency.len();
    let (p50, p90, p99, max) = (
        quantile(&latency, 0.50),
        quantile(&latency, 0.90),
        quantile(&latency, 0.99),
        latency.last().copied().unwrap_or(f64::NAN),
    );
    let background_rate = sent.background as f64 / sent.secs;
    println!(
        "background: {} records sent in {:.1} s ({:.0}/s; the producer fell behind its schedule by {} ms at most), \
         {records:.0} read by seclake, {} failed deliveries",
        sent.background,
        sent.secs,
        background_rate,
        sent.max_late.as_millis(),
        sent.failed,
    );
    println!(
        "IP set: {updates:.0} UpdateIPSet calls ({conflicts:.0} lock conflicts, {errors:.0} errors), \
         {skipped:.0} batches skipped by the response, {polls} reads (mean {:.1} ms); \
         decision → set written: mean {applied_ms:.0} ms (seclake_response_block_seconds)",
        poll_secs * 1000.0 / polls.max(1) as f64
    );
    println!(
        "attacker → IP set: p50 {p50:.0} ms, p90 {p90:.0} ms, p99 {p99:.0} ms, max {max:.0} ms over {} attackers \
         ({missing} never seen); resolution: one read every {} ms",
        latency.len(),
        args.poll_ms
    );
    let met = missing == 0 && p99 < 1000.0;
    println!(
        "goal p99 < 1000 ms: {}",
        if met { "met" } else { "NOT met" }
    );
    if let Some(path) = &args.json {
        let value = json!({
            "rate": args.rate,
            "background_sent": sent.background,
            "background_rate": background_rate,
            "records_read": records,
            "attackers": args.attackers,
            "attack_every_ms": args.attack_every_ms,
            "poll_ms": args.poll_ms,
            "latency_ms": {"p50": p50, "p90": p90, "p99": p99, "max": max, "all": latency},
            "missing": missing,
            "ip_set_updates": updates,
            "conflicts": conflicts,
            "errors": errors,
            "decided_to_written_mean_ms": applied_ms,
            "linger_ms": args.linger_ms,
            "skipped_batches": skipped,
            "met": met,
        });
        fs::write(path, serde_json::to_vec_pretty(&value)?)?;
    }
    Ok(met && status.success())
}

/// When the producer sends what.
struct Plan {
    rate: f64,
    warmup: Duration,
    every: Duration,
}

/// What the producer did.
struct Sent {
    background: u64,
    /// Per attacker: when its record was handed to the producer.
    attacks: Vec<Option<Instant>>,
    secs: f64,
    max_late: Duration,
    failed: u64,
}

/// Background records at `plan.rate` from now until the last attacker is
/// sent; attacker `i` at `warmup + i × every`.
fn produce(
    producer: &ThreadedProducer<Deliveries>,
    topic: &str,
    pool: &[Value],
    attack: &Value,
    attackers: &[Ipv4Addr],
    plan: &Plan,
) -> Result<Sent> {
    let mut sent = Sent {
        background: 0,
        attacks: vec![None; attackers.len()],
        secs: 0.0,
        max_late: Duration::ZERO,
        failed: 0,
    };
    let start = Instant::now();
    let end = plan.warmup + plan.every * attackers.len() as u32;
    let mut next_attacker = 0usize;
    let mut line = Vec::with_capacity(4096);
    loop {
        let due_background = start + Duration::from_secs_f64(sent.background as f64 / plan.rate);
        let due_attack = (next_attacker < attackers.len())
            .then(|| start + plan.warmup + plan.every * next_attacker as u32);
        let attack_now = due_attack.is_some_and(|a| a <= due_background);
        let due = if attack_now {
            due_attack.unwrap_or(due_background)
        } else {
            due_background
        };
        if due.duration_since(start) > end && !attack_now {
            break;
        }
        let now = Instant::now();
        if let Some(wait) = due.checked_duration_since(now) {
            std::thread::sleep(wait);
        } else {
            sent.max_late = sent.max_late.max(now - due);
        }
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let mut record = if attack_now {
            attack.clone()
        } else {
            pool[sent.background as usize % pool.len()].clone()
        };
        record["timestamp"] = json!(ms);
        if attack_now {
            record["httpRequest"]["clientIp"] = json!(attackers[next_attacker].to_string());
        }
        line.clear();
        serde_json::to_writer(&mut line, &record)?;
        let handed = Instant::now();
        let mut message = BaseRecord::<(), [u8]>::to(topic).payload(&line[..]);
        loop {
            match producer.send(message) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    message = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => bail!("producing to {topic}: {e}"),
            }
        }
        if attack_now {
            sent.attacks[next_attacker] = Some(handed);
            next_attacker += 1;
        } else {
            sent.background += 1;
        }
    }
    sent.secs = start.elapsed().as_secs_f64();
    producer
        .flush(Duration::from_secs(60))
        .context("waiting for the broker to acknowledge every record")?;
    sent.failed = producer.context().failed.load(Ordering::Relaxed);
    Ok(sent)
}

/// The fixture's WAF records, parsed once.
fn background_pool() -> Result<Vec<Value>> {
    let text = seclake_fixtures::waf_lines(SEED, bench_date(), POOL);
    let pool: Vec<Value> = text
        .split(|b| *b == b'\n')
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect();
    ensure!(!pool.is_empty(), "the fixture made no WAF records");
    Ok(pool)
}

/// A blocked SQL injection by sqlmap: 30 (BLOCK) + 25 (the SQLi group) + 25
/// (a scanner's user agent) = 80, critical (docs/threat-scoring.md).
fn attack_template(pool: &[Value]) -> Result<Value> {
    let mut record = pool
        .iter()
        .find(|r| r["httpRequest"]["headers"].is_array())
        .cloned()
        .context("no fixture record with headers")?;
    record["action"] = json!("BLOCK");
    record["terminatingRuleId"] = json!("AWS-AWSManagedRulesSQLiRuleSet");
    record["terminatingRuleType"] = json!("MANAGED_RULE_GROUP");
    record["httpRequest"]["uri"] = json!("/products");
    record["httpRequest"]["args"] = json!("id=1%27%20OR%20%271%27%3D%271");
    record["httpRequest"]["headers"] = json!([
        {"name": "host", "value": "shop.example.com"},
        {"name": "user-agent", "value": "sqlmap/1.8.11#stable (https://sqlmap.org)"},
    ]);
    Ok(record)
}

/// moto's WAFv2 and DynamoDB.
struct Aws {
    waf: aws_sdk_wafv2::Client,
    dynamo: aws_sdk_dynamodb::Client,
}

impl Aws {
    fn new(endpoint: &str) -> Aws {
        let credentials =
            aws_credential_types::Credentials::new("testing", "testing", None, None, "bench");
        let waf = aws_sdk_wafv2::Config::builder()
            .behavior_version(aws_sdk_wafv2::config::BehaviorVersion::latest())
            .region(aws_sdk_wafv2::config::Region::new("us-east-1"))
            .credentials_provider(credentials.clone())
            .endpoint_url(endpoint)
            .build();
        let dynamo = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .credentials_provider(credentials)
            .endpoint_url(endpoint)
            .build();
        Aws {
            waf: aws_sdk_wafv2::Client::from_conf(waf),
            dynamo: aws_sdk_dynamodb::Client::from_conf(dynamo),
        }
    }

    async fn create_set(&self, name: &str) -> Result<String> {
        let created = self
            .waf
            .create_ip_set()
            .name(name)
            .scope(Scope::Regional)
            .ip_address_version(IpAddressVersion::Ipv4)
            .set_addresses(Some(Vec::new()))
            .send()
            .await
            .context("CreateIPSet (is moto up? scripts/services up moto)")?;
        created
            .summary()
            .and_then(|s| s.id())
            .map(str::to_owned)
            .context("CreateIPSet returned no id")
    }

    /// The set's CIDRs and lock token, read as seclake reads it.
    async fn read(&self, name: &str, id: &str) -> Result<IpSetState> {
        IpSet::new(
            self.waf.clone(),
            name,
            id,
            seclake_sink::response::Scope::Regional,
        )
        .read()
        .await
        .context("GetIPSet")
    }

    async fn addresses(&self, name: &str, id: &str) -> Result<Vec<String>> {
        let state = self.read(name, id).await?;
        Ok(state.addresses.iter().map(ToString::to_string).collect())
    }

    async fn delete_set(&self, name: &str, id: &str) -> Result<()> {
        let state = self.read(name, id).await?;
        self.waf
            .delete_ip_set()
            .name(name)
            .id(id)
            .scope(Scope::Regional)
            .lock_token(state.lock_token)
            .send()
            .await?;
        Ok(())
    }

    async fn create_table(&self, name: &str) -> Result<()> {
        use aws_sdk_dynamodb::types::{
            AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
        };
        self.dynamo
            .create_table()
            .table_name(name)
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("net")
                    .key_type(KeyType::Hash)
                    .build()?,
            )
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("net")
                    .attribute_type(ScalarAttributeType::S)
                    .build()?,
            )
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
            .context("CreateTable")?;
        Ok(())
    }

    async fn delete_table(&self, name: &str) -> Result<()> {
        self.dynamo.delete_table().table_name(name).send().await?;
        Ok(())
    }
}
