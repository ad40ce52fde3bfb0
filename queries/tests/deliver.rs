//! Delivering a report: S3 and SES v2 on the local moto server, Slack to an
//! HTTP receiver in the test. What SES sent is read back from moto's record
//! of sent messages.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::post;
use chrono::NaiveDate;
use object_store::{Attribute, ObjectStoreExt};
use seclake_queries::deliver::{
    Channel, Delivered, DeliveryConfig, DeliveryError, EmailTarget, ReportFile, S3Target,
    SlackTarget, deliver,
};
use seclake_sink::store::{Location, S3Options};

const REGION: &str = "us-east-1";
const SUBJECT: &str = "seclake security report 2026-11-29";
const SUMMARY: &str = "1,204 requests, 17.3% blocked; 2 critical Falco alerts & 1 leaked key";

fn date() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 29).unwrap()
}

/// Makes `address` a sending identity on moto, as SES v2 requires.
async fn verify_sender(endpoint: &str, address: &str) {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(endpoint)
        .load()
        .await;
    aws_sdk_sesv2::Client::new(&config)
        .create_email_identity()
        .email_identity(address)
        .send()
        .await
        .unwrap();
}

/// The message moto recorded as sent with `id`.
async fn sent_message(endpoint: &str, id: &str) -> serde_json::Value {
    let url = format!("{endpoint}/moto-api/data.json");
    let client = reqwest::Client::new();
    let mut response = client.get(&url).send().await.unwrap();
    // moto answers 500 once right after some S3 calls; a retry succeeds.
    if response.status() == StatusCode::INTERNAL_SERVER_ERROR {
        response = client.get(&url).send().await.unwrap();
    }
    assert!(response.status().is_success(), "{}", response.status());
    let data: serde_json::Value = response.json().await.unwrap();
    let messages = data["ses"]["Message"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    messages
        .into_iter()
        .find(|message| message["id"] == id)
        .unwrap_or_else(|| panic!("moto recorded no message {id}"))
}

fn files() -> Vec<ReportFile> {
    vec![
        ReportFile {
            name: "report.html".into(),
            content_type: "text/html; charset=utf-8",
            bytes: "<!doctype html><h1>Security report 2026-11-29</h1><p>Blocked: 17.3%</p>".into(),
        },
        ReportFile {
            name: "report.md".into(),
            content_type: "text/markdown; charset=utf-8",
            bytes: "# Security report 2026-11-29\n\nBlocked: 17.3%\n".into(),
        },
        ReportFile {
            name: "report.json".into(),
            content_type: "application/json",
            bytes: br#"{"date":"2026-11-29"}"#.to_vec(),
        },
    ]
}

/// A Slack incoming webhook stand-in: records each request's content type
/// and body, and answers `status` with `answer`.
struct Receiver {
    status: StatusCode,
    answer: &'static str,
    requests: Mutex<Vec<(String, serde_json::Value)>>,
}

impl Receiver {
    /// Serves on 127.0.0.1 and returns the receiver and its webhook URL.
    async fn start(status: StatusCode, answer: &'static str) -> (Arc<Receiver>, String) {
        async fn hook(
            State(receiver): State<Arc<Receiver>>,
            headers: HeaderMap,
            body: String,
        ) -> (StatusCode, &'static str) {
            let content_type = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let json = serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body));
            receiver.requests.lock().unwrap().push((content_type, json));
            (receiver.status, receiver.answer)
        }
        let receiver = Arc::new(Receiver {
            status,
            answer,
            requests: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .route("/services/T000/B000/s3cr3tT0ken", post(hook))
            .with_state(Arc::clone(&receiver));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/services/T000/B000/s3cr3tT0ken",
            listener.local_addr().unwrap()
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, url)
    }

    fn requests(&self) -> Vec<(String, serde_json::Value)> {
        self.requests.lock().unwrap().clone()
    }
}

fn s3_target(endpoint: &str, bucket: &str) -> S3Target {
    S3Target {
        url: format!("s3://{bucket}/security"),
        endpoint: Some(endpoint.to_owned()),
        region: Some(REGION.to_owned()),
    }
}

fn email_target(endpoint: &str, from: &str) -> EmailTarget {
    EmailTarget {
        from: format!("seclake <{from}>"),
        to: vec!["soc@example.com".into(), "oncall@example.com".into()],
        region: Some(REGION.to_owned()),
        endpoint: Some(endpoint.to_owned()),
        subject_prefix: Some("[prod]".into()),
    }
}

#[tokio::test]
async fn every_channel_delivers_the_report() {
    let Some(endpoint) = seclake_fixtures::services::moto_with_credentials() else {
        return;
    };
    let bucket = seclake_fixtures::services::unique_name("seclake-reports");
    seclake_fixtures::services::create_bucket(&endpoint, &bucket);
    let sender = format!(
        "{}@example.com",
        seclake_fixtures::services::unique_name("reports")
    );
    verify_sender(&endpoint, &sender).await;
    let (slack, webhook_url) = Receiver::start(StatusCode::OK, "ok").await;
    let config = DeliveryConfig {
        s3: Some(s3_target(&endpoint, &bucket)),
        email: Some(email_target(&endpoint, &sender)),
        slack: Some(SlackTarget { webhook_url }),
    };
    config.check().unwrap();

    let outcomes = deliver(date(), &files(), SUBJECT, SUMMARY, &config).await;

    let channels: Vec<Channel> = outcomes.iter().map(|(channel, _)| *channel).collect();
    assert_eq!(channels, [Channel::S3, Channel::Email, Channel::Slack]);
    let mut outcomes = outcomes.into_iter().map(|(_, outcome)| outcome.unwrap());

    // S3: every file under <prefix>/reports/dt=YYYY-MM-DD/, with its bytes
    // and content type.
    let prefix = format!("s3://{bucket}/security/reports/dt=2026-11-29");
    let Delivered::S3 { urls } = outcomes.next().unwrap() else {
        panic!("not an S3 outcome")
    };
    assert_eq!(
        urls,
        ["report.html", "report.md", "report.json"].map(|name| format!("{prefix}/{name}"))
    );
    let options = S3Options {
        endpoint: Some(endpoint.clone()),
        region: Some(REGION.to_owned()),
    };
    let lake = Location::open("test", &format!("s3://{bucket}"), &options).unwrap();
    for file in files() {
        let path = format!("security/reports/dt=2026-11-29/{}", file.name);
        let object = lake.store.get(&path.as_str().into()).await.unwrap();
        assert_eq!(
            object
                .attributes
                .get(&Attribute::ContentType)
                .map(|v| v.as_ref()),
            Some(file.content_type),
            "{path}"
        );
        assert_eq!(object.bytes().await.unwrap(), file.bytes, "{path}");
    }

    // Email: moto's record of the message has the subject, sender,
    // recipients and the HTML body (moto keeps only that part).
    let Delivered::Email { message_id, to } = outcomes.next().unwrap() else {
        panic!("not an email outcome")
    };
    assert_eq!(to, ["soc@example.com", "oncall@example.com"]);
    let message = sent_message(&endpoint, &message_id).await;
    assert_eq!(message["subject"], format!("[prod] {SUBJECT}"));
    assert_eq!(message["source"], format!("seclake <{sender}>"));
    assert_eq!(
        message["destinations"]["ToAddresses"],
        serde_json::json!(["soc@example.com", "oncall@example.com"])
    );
    assert_eq!(
        message["body"],
        std::str::from_utf8(&files()[0].bytes).unwrap()
    );

    // Slack: one JSON post with the summary, escaped, and a link to the
    // uploaded HTML page (path-style under the custom endpoint).
    assert_eq!(outcomes.next().unwrap(), Delivered::Slack);
    let requests = slack.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let (content_type, body) = &requests[0];
    assert_eq!(content_type, "application/json");
    let text = body["text"].as_str().unwrap();
    let page = format!("{endpoint}/{bucket}/security/reports/dt=2026-11-29/report.html");
    assert_eq!(
        text,
        format!(
            "1,204 requests, 17.3% blocked; 2 critical Falco alerts &amp; 1 leaked key\n\n\
             Full report: <{page}|{prefix}/report.html>"
        )
    );
}

#[tokio::test]
async fn a_failed_channel_names_its_cause_and_the_others_still_deliver() {
    let Some(endpoint) = seclake_fixtures::services::moto_with_credentials() else {
        return;
    };
    let bucket = seclake_fixtures::services::unique_name("seclake-reports");
    seclake_fixtures::services::create_bucket(&endpoint, &bucket);
    let unverified = format!(
        "{}@example.com",
        seclake_fixtures::services::unique_name("nobody")
    );
    let (slack, webhook_url) = Receiver::start(StatusCode::NOT_FOUND, "no_service").await;
    let config = DeliveryConfig {
        s3: Some(s3_target(&endpoint, &bucket)),
        email: Some(email_target(&endpoint, &unverified)),
        slack: Some(SlackTarget { webhook_url }),
    };

    let mut outcomes = deliver(date(), &files(), SUBJECT, SUMMARY, &config)
        .await
        .into_iter();

    let (channel, s3) = outcomes.next().unwrap();
    assert_eq!(channel, Channel::S3);
    assert!(
        matches!(s3, Ok(Delivered::S3 { ref urls }) if urls.len() == 3),
        "{s3:?}"
    );

    let (channel, email) = outcomes.next().unwrap();
    assert_eq!(channel, Channel::Email);
    let err = email.unwrap_err();
    assert_eq!(err.channel(), Channel::Email);
    assert!(matches!(err, DeliveryError::Ses { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.starts_with("email: SES SendEmail: MessageRejected: Email address not verified")
            && message.contains(&unverified)
            && message.contains("(request id "),
        "{message}"
    );

    let (channel, posted) = outcomes.next().unwrap();
    assert_eq!(channel, Channel::Slack);
    let err = posted.unwrap_err();
    assert_eq!(err.channel(), Channel::Slack);
    assert_eq!(
        err.to_string(),
        "Slack: the webhook answered 404 Not Found: no_service"
    );
    // The summary went out with the link all the same.
    let requests = slack.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let text = requests[0].1["text"].as_str().unwrap();
    assert!(
        text.contains(&format!(
            "|s3://{bucket}/security/reports/dt=2026-11-29/report.html>"
        )),
        "{text}"
    );
    assert!(outcomes.next().is_none());
}

#[tokio::test]
async fn a_failed_upload_is_reported_and_slack_says_so() {
    let Some(endpoint) = seclake_fixtures::services::moto_with_credentials() else {
        return;
    };
    let missing = seclake_fixtures::services::unique_name("seclake-no-such-bucket");
    let (slack, webhook_url) = Receiver::start(StatusCode::OK, "ok").await;
    let config = DeliveryConfig {
        s3: Some(s3_target(&endpoint, &missing)),
        email: None,
        slack: Some(SlackTarget { webhook_url }),
    };

    let outcomes = deliver(date(), &files(), SUBJECT, SUMMARY, &config).await;

    assert_eq!(outcomes.len(), 2);
    let (channel, upload) = &outcomes[0];
    assert_eq!(*channel, Channel::S3);
    let err = upload.as_ref().unwrap_err();
    assert!(matches!(err, DeliveryError::Upload { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.starts_with(&format!(
            "S3: uploading s3://{missing}/security/reports/dt=2026-11-29/report.html: "
        )),
        "{message}"
    );
    assert!(
        matches!(outcomes[1], (Channel::Slack, Ok(Delivered::Slack))),
        "{outcomes:?}"
    );
    let text = slack.requests()[0].1["text"].as_str().unwrap().to_owned();
    assert!(
        text.ends_with("not uploaded (the S3 upload failed, see the job's log)"),
        "{text}"
    );
}

#[tokio::test]
async fn an_unreachable_webhook_fails_without_showing_its_secret() {
    // A port nothing listens on any more.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let config = DeliveryConfig {
        slack: Some(SlackTarget {
            webhook_url: format!("http://{addr}/services/T000/B000/s3cr3tT0ken"),
        }),
        ..DeliveryConfig::default()
    };

    let outcomes = deliver(date(), &files(), SUBJECT, SUMMARY, &config).await;

    let [(Channel::Slack, Err(err))] = outcomes.as_slice() else {
        panic!("{outcomes:?}")
    };
    assert!(matches!(err, DeliveryError::SlackRequest { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.starts_with("Slack: posting to the webhook: "),
        "{message}"
    );
    let chain = std::iter::successors(Some(err as &dyn std::error::Error), |e| e.source())
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ");
    assert!(!chain.contains("s3cr3tT0ken"), "{chain}");
}

#[tokio::test]
async fn a_file_name_with_a_directory_uploads_nothing() {
    let config = DeliveryConfig {
        // Nothing listens there: an attempted upload would fail differently.
        s3: Some(s3_target("http://127.0.0.1:9", "reports")),
        ..DeliveryConfig::default()
    };
    let mut files = files();
    files[2].name = "../report.json".into();

    let outcomes = deliver(date(), &files, SUBJECT, SUMMARY, &config).await;

    let [(Channel::S3, Err(err))] = outcomes.as_slice() else {
        panic!("{outcomes:?}")
    };
    assert_eq!(
        err.to_string(),
        "S3: \"../report.json\" is not a plain file name"
    );
}

#[tokio::test]
async fn an_email_needs_an_html_or_markdown_file() {
    let config = DeliveryConfig {
        email: Some(EmailTarget {
            from: "reports@example.com".into(),
            to: vec!["soc@example.com".into()],
            region: Some(REGION.into()),
            endpoint: Some("http://127.0.0.1:9".into()),
            subject_prefix: None,
        }),
        ..DeliveryConfig::default()
    };
    let json_only = &files()[2..];

    let outcomes = deliver(date(), json_only, SUBJECT, SUMMARY, &config).await;

    let [(Channel::Email, Err(err))] = outcomes.as_slice() else {
        panic!("{outcomes:?}")
    };
    assert_eq!(
        err.to_string(),
        "email: the report has no .html or .md file to send"
    );
}

#[test]
fn the_config_section_reads_every_channel_and_refuses_unknown_keys() {
    let config: DeliveryConfig = toml::from_str(
        r#"
        [s3]
        url = "s3://reports/security"
        region = "eu-west-1"

        [email]
        from = "seclake <reports@example.com>"
        to = ["soc@example.com"]
        subject_prefix = "[prod]"

        [slack]
        webhook_url = "https://hooks.slack.com/services/T000/B000/s3cr3tT0ken"
        "#,
    )
    .unwrap();
    config.check().unwrap();
    assert_eq!(config.s3.unwrap().region.as_deref(), Some("eu-west-1"));
    assert_eq!(config.email.unwrap().to, ["soc@example.com"]);
    assert!(DeliveryConfig::default().is_empty());

    let err =
        toml::from_str::<DeliveryConfig>("[email]\nfrom = \"a@example.com\"\nto = []\ncc = []\n")
            .unwrap_err()
            .to_string();
    assert!(err.contains("unknown field `cc`"), "{err}");
}

#[test]
fn config_errors_name_the_key_and_say_why() {
    let valid = || DeliveryConfig {
        s3: Some(S3Target {
            url: "s3://reports/security".into(),
            endpoint: None,
            region: None,
        }),
        email: Some(EmailTarget {
            from: "reports@example.com".into(),
            to: vec!["soc@example.com".into()],
            region: None,
            endpoint: None,
            subject_prefix: None,
        }),
        slack: Some(SlackTarget {
            webhook_url: "https://hooks.slack.com/services/T000/B000/s3cr3tT0ken".into(),
        }),
    };
    valid().check().unwrap();

    /// The key, how to break it, what the error says.
    type Case = (&'static str, fn(&mut DeliveryConfig), &'static str);
    let cases: [Case; 9] = [
        (
            "report.deliver.s3.url",
            |c| c.s3.as_mut().unwrap().url = "file:///tmp/reports".into(),
            "is not an s3://bucket/prefix URL",
        ),
        (
            "report.deliver.s3.url",
            |c| c.s3.as_mut().unwrap().url = "s3:///reports".into(),
            "names no bucket",
        ),
        (
            "report.deliver.s3.endpoint",
            |c| c.s3.as_mut().unwrap().endpoint = Some("127.0.0.1:5000".into()),
            "is not an http:// or https:// URL",
        ),
        (
            "report.deliver.s3.region",
            |c| c.s3.as_mut().unwrap().region = Some(" ".into()),
            "is empty",
        ),
        (
            "report.deliver.email.to",
            |c| c.email.as_mut().unwrap().to.clear(),
            "names no recipient",
        ),
        (
            "report.deliver.email.to",
            |c| {
                c.email
                    .as_mut()
                    .unwrap()
                    .to
                    .push("soc at example.com".into())
            },
            "\"soc at example.com\" is not an email address",
        ),
        (
            "report.deliver.email.to",
            |c| c.email.as_mut().unwrap().to = vec!["soc@example.com".into(); 51],
            "SES takes at most 50",
        ),
        (
            "report.deliver.email.from",
            |c| c.email.as_mut().unwrap().from = "reports".into(),
            "\"reports\" is not an email address",
        ),
        (
            "report.deliver.slack.webhook_url",
            |c| c.slack.as_mut().unwrap().webhook_url = "hooks.slack.com/services/x".into(),
            "not a URL",
        ),
    ];
    for (key, break_it, why) in cases {
        let mut config = valid();
        break_it(&mut config);
        let err = config.check().unwrap_err();
        assert!(
            matches!(err, DeliveryError::Config { key: k, .. } if k == key),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains(&format!("config key `{key}`: ")) && message.contains(why),
            "{message}"
        );
    }
}
