//! `seclake blocks list|add|remove`: the operator's hand on the WAF IP set
//! that `[response]` names. Changes go through the same lock-token retries
//! as the pipeline's, and the allow-list holds for them too.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use seclake_enrich::threat::ThreatLevel;
use seclake_sink::ResponseConfig;
use seclake_sink::response::{BlockTable, IpNet, IpSet, StoredBlock, parse_net};

use crate::config::Config;

/// `seclake blocks …`.
#[derive(Debug, clap::Subcommand)]
pub enum BlocksCommand {
    /// Print the IP set's CIDRs, one per line; with `state_table`, each
    /// with its expiry, trigger and reasons.
    List {
        /// The seclake config; its `[response]` names the IP set.
        #[arg(long)]
        config: PathBuf,
    },
    /// Block addresses (their /32 or /128) or CIDRs; one the allow-list
    /// covers is refused, and then nothing is written.
    Add(ChangeArgs),
    /// Unblock addresses or CIDRs.
    Remove(ChangeArgs),
}

/// The flags of `blocks add` and `blocks remove`.
#[derive(Debug, Clone, clap::Args)]
pub struct ChangeArgs {
    /// The seclake config; its `[response]` names the IP set.
    #[arg(long)]
    pub config: PathBuf,
    /// IP addresses or CIDRs.
    #[arg(required = true, value_name = "ADDRESS")]
    pub addresses: Vec<String>,
    /// Say what would change and write nothing (as `[response] dry_run`).
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs `command`; what to print.
pub fn run(command: &BlocksCommand) -> Result<String> {
    let config = match command {
        BlocksCommand::List { config } => config,
        BlocksCommand::Add(args) | BlocksCommand::Remove(args) => &args.config,
    };
    let cfg = Config::load(config)?;
    let response = cfg.response.with_context(|| {
        format!(
            "{}: no [response] section names an IP set",
            config.display()
        )
    })?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a tokio runtime")?;
    rt.block_on(async {
        let shared = response.aws().await;
        let waf = IpSet::connect(&response, &shared);
        let table = BlockTable::connect(&response, &shared);
        if let Some(table) = &table {
            table.check().await?;
        }
        match command {
            BlocksCommand::List { .. } => list(&waf, table.as_ref()).await,
            BlocksCommand::Add(args) => change(&waf, table.as_ref(), &response, args, true).await,
            BlocksCommand::Remove(args) => {
                change(&waf, table.as_ref(), &response, args, false).await
            }
        }
    })
}

async fn list(waf: &IpSet, table: Option<&BlockTable>) -> Result<String> {
    let set = waf.read().await?;
    let stored = match table {
        Some(table) => table.all().await?,
        None => Vec::new(),
    };
    let mut out = String::new();
    for net in &set.addresses {
        let _ = match (table, stored.iter().find(|b| b.net == *net)) {
            (None, _) => writeln!(out, "{net}"),
            (Some(_), None) => writeln!(out, "{net}\tno record in the block table"),
            (Some(_), Some(b)) => writeln!(
                out,
                "{net}\tuntil {}\t{}\t{}",
                chrono::DateTime::from_timestamp_millis(b.until_ms)
                    .map_or_else(|| b.until_ms.to_string(), |t| t.to_rfc3339()),
                b.trigger,
                b.reasons.join(", ")
            ),
        };
    }
    Ok(out)
}

async fn change(
    waf: &IpSet,
    table: Option<&BlockTable>,
    response: &ResponseConfig,
    args: &ChangeArgs,
    add: bool,
) -> Result<String> {
    let nets = args
        .addresses
        .iter()
        .map(|a| parse_net(a).map_err(anyhow::Error::msg))
        .collect::<Result<Vec<IpNet>>>()?;
    if add {
        let allow = response.allow_list()?;
        for net in &nets {
            if let Some(allowed) = allow.overlapping(*net) {
                bail!(
                    "{net} is covered by response.allow entry {allowed}: never blocked, nothing written"
                );
            }
        }
    }
    let mut out = String::new();
    if args.dry_run || response.dry_run {
        let set = waf.read().await?;
        for net in &nets {
            let now = set.addresses.contains(net);
            let what = match (add, now) {
                (true, false) => "would add",
                (true, true) => "already blocked",
                (false, true) => "would remove",
                (false, false) => "not blocked",
            };
            let _ = writeln!(out, "dry run: {what} {net}");
        }
        return Ok(out);
    }
    let (to_add, to_remove) = if add {
        (&nets[..], &[][..])
    } else {
        (&[][..], &nets[..])
    };
    let change = waf.change(to_add, to_remove).await?;
    if let Some(table) = table {
        let now = chrono::Utc::now().timestamp_millis();
        let ttl = response.policy()?.ttl.as_millis() as i64;
        for net in &change.added {
            let record = StoredBlock {
                net: *net,
                until_ms: now.saturating_add(ttl),
                created_ms: now,
                score: 0,
                level: ThreatLevel::Low,
                trigger: "operator".into(),
                reasons: Vec::new(),
            };
            table.put(&record).await?;
        }
        for net in &change.removed {
            table.remove(*net).await?;
        }
    }
    for net in &change.added {
        let _ = writeln!(out, "added {net}");
    }
    for net in &change.removed {
        let _ = writeln!(out, "removed {net}");
    }
    let done: Vec<IpNet> = change
        .added
        .iter()
        .chain(&change.removed)
        .copied()
        .collect();
    for net in nets.iter().filter(|n| !done.contains(n)) {
        let state = if add {
            "already blocked"
        } else {
            "not blocked"
        };
        let _ = writeln!(out, "{state}: {net}");
    }
    Ok(out)
}
