//! `seclake dashboards import`: the OpenSearch Dashboards saved objects of
//! `dashboards/*.ndjson` (compiled in), or the given files, sent to the
//! saved objects import API (`POST /api/saved_objects/_import`).

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::{StatusCode, Url};
use serde::Deserialize;
use serde_json::Value;

/// The saved objects shipped with seclake: every `dashboards/*.ndjson`, by file name.
pub const BUNDLED: &[(&str, &str)] = &[(
    "seclake.ndjson",
    include_str!("../dashboards/seclake.ndjson"),
)];

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Dashboards writes every object to OpenSearch before it answers.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// `seclake dashboards …`.
#[derive(Debug, clap::Subcommand)]
pub enum DashboardsCommand {
    /// Import the seclake index pattern, visualizations and dashboard (or the
    /// saved objects of --file) into OpenSearch Dashboards, replacing objects
    /// with the same ids.
    Import(ImportArgs),
}

/// The flags of `seclake dashboards import`.
#[derive(Debug, Clone, clap::Args)]
pub struct ImportArgs {
    /// OpenSearch Dashboards, e.g. http://127.0.0.1:5601 (plus its base path, if any).
    #[arg(long)]
    pub url: String,
    /// Saved objects NDJSON (a Dashboards export) to import instead of the
    /// bundled ones; repeatable. All files go in one import, so objects may
    /// refer to objects of another file.
    #[arg(long = "file", value_name = "PATH", num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// User for HTTP basic authentication (security plugin).
    #[arg(long, env = "SECLAKE_DASHBOARDS_USERNAME")]
    pub username: Option<String>,
    /// Password for HTTP basic authentication.
    #[arg(
        long,
        env = "SECLAKE_DASHBOARDS_PASSWORD",
        hide_env_values = true,
        requires = "username"
    )]
    pub password: Option<String>,
}

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
pub enum DashboardsError {
    /// A --file could not be read.
    #[error("cannot read {}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The reason.
        error: std::io::Error,
    },
    /// A line of a file is not a saved object.
    #[error("{file} line {line}: not a saved object: {reason}")]
    NotSavedObject {
        /// The file (its name when bundled).
        file: String,
        /// 1-based.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The same object is in the files twice; Dashboards refuses such an import.
    #[error("{kind} {id} is in {first} and again in {second}")]
    Duplicate {
        /// Saved object type.
        kind: String,
        /// Saved object id.
        id: String,
        /// Where it is first.
        first: String,
        /// Where it is again.
        second: String,
    },
    /// The files hold no saved object.
    #[error("no saved objects in {0}")]
    Empty(String),
    /// --url is not an http(s) URL.
    #[error("--url {url} is not an http(s) URL: {reason}")]
    Url {
        /// As given, its password hidden.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The async runtime or the HTTP client could not start.
    #[error("cannot start the HTTP client: {0}")]
    Client(String),
    /// Nothing answered, or not in time.
    #[error("no OpenSearch Dashboards answered at {url}: {reason}")]
    Unreachable {
        /// The import endpoint, its password hidden.
        url: String,
        /// The innermost cause (refused, timed out, DNS, TLS, …).
        reason: String,
    },
    /// Dashboards answered with an error status (unauthorised, bad request, …).
    #[error("OpenSearch Dashboards answered {status}: {message}")]
    Refused {
        /// The HTTP status.
        status: StatusCode,
        /// Dashboards' message, or the start of the body.
        message: String,
    },
    /// A success status with a body that is not an import result.
    #[error("the answer is not a saved objects import result ({reason}): {body}")]
    Response {
        /// Why it does not parse.
        reason: String,
        /// The start of the body.
        body: String,
    },
    /// Dashboards imported some objects and not others.
    #[error("{}", failed_message(.failed, .imported))]
    Failed {
        /// The objects Dashboards did not import, with its reasons.
        failed: Vec<FailedObject>,
        /// How many it did import.
        imported: u64,
    },
}

fn failed_message(failed: &[FailedObject], imported: &u64) -> String {
    if failed.is_empty() {
        return format!(
            "OpenSearch Dashboards reported a failed import without naming an object ({imported} imported)"
        );
    }
    let list: Vec<String> = failed.iter().map(ToString::to_string).collect();
    format!(
        "{} saved object{} not imported ({imported} imported): {}",
        failed.len(),
        if failed.len() == 1 { " was" } else { "s were" },
        list.join("; ")
    )
}

/// One object Dashboards refused, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedObject {
    /// Saved object type (`visualization`, `dashboard`, …).
    pub kind: String,
    /// Saved object id.
    pub id: String,
    /// Its title, when Dashboards gave it.
    pub title: Option<String>,
    /// Dashboards' reason, in words.
    pub reason: String,
}

impl fmt::Display for FailedObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.id)?;
        if let Some(title) = &self.title {
            write!(f, " ({title:?})")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// NDJSON saved objects and where they come from.
#[derive(Debug, Clone)]
pub struct Source {
    /// A path, or a bundled file's name.
    pub name: String,
    /// The NDJSON.
    pub text: String,
}

impl ImportArgs {
    /// The files of --file, or the bundled files when there are none.
    pub fn sources(&self) -> Result<Vec<Source>, DashboardsError> {
        if self.files.is_empty() {
            return Ok(BUNDLED
                .iter()
                .map(|(name, text)| Source {
                    name: (*name).to_owned(),
                    text: (*text).to_owned(),
                })
                .collect());
        }
        self.files
            .iter()
            .map(|path| {
                let text =
                    std::fs::read_to_string(path).map_err(|error| DashboardsError::Read {
                        path: path.clone(),
                        error,
                    })?;
                Ok(Source {
                    name: path.display().to_string(),
                    text,
                })
            })
            .collect()
    }
}

/// Saved objects checked line by line and joined into one NDJSON upload.
#[derive(Debug, Clone)]
pub struct Bundle {
    ndjson: String,
    objects: usize,
    names: Vec<String>,
}

impl Bundle {
    /// Checks that every non-blank line is a saved object (an export's
    /// trailing `exportedCount` line is left out) and that no object is
    /// there twice.
    pub fn new(sources: &[Source]) -> Result<Bundle, DashboardsError> {
        let mut seen: HashMap<(String, String), String> = HashMap::new();
        let mut ndjson = String::new();
        for source in sources {
            for (i, line) in source.text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let bad = |reason: String| DashboardsError::NotSavedObject {
                    file: source.name.clone(),
                    line: i + 1,
                    reason,
                };
                let value: Value = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
                let Some(object) = value.as_object() else {
                    return Err(bad("not a JSON object".to_owned()));
                };
                if object.contains_key("exportedCount") {
                    continue;
                }
                let text = |key: &str| match object.get(key) {
                    Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
                    _ => Err(bad(format!("no `{key}` string"))),
                };
                let (kind, id) = (text("type")?, text("id")?);
                if !object.get("attributes").is_some_and(Value::is_object) {
                    return Err(bad("no `attributes` object".to_owned()));
                }
                if let Some(first) = seen.insert((kind.clone(), id.clone()), source.name.clone()) {
                    return Err(DashboardsError::Duplicate {
                        kind,
                        id,
                        first,
                        second: source.name.clone(),
                    });
                }
                ndjson.push_str(line.trim());
                ndjson.push('\n');
            }
        }
        let names: Vec<String> = sources.iter().map(|s| s.name.clone()).collect();
        if seen.is_empty() {
            return Err(DashboardsError::Empty(names.join(", ")));
        }
        Ok(Bundle {
            ndjson,
            objects: seen.len(),
            names,
        })
    }

    /// How many saved objects it holds.
    pub fn len(&self) -> usize {
        self.objects
    }

    /// Always false: a bundle holds at least one object.
    pub fn is_empty(&self) -> bool {
        self.objects == 0
    }
}

/// What an import did.
#[derive(Debug, Clone)]
pub struct ImportSummary {
    /// Objects sent.
    pub sent: usize,
    /// Objects Dashboards reports imported.
    pub imported: u64,
    /// The files they came from.
    pub sources: Vec<String>,
    /// The Dashboards URL, its password hidden.
    pub url: String,
}

impl fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "imported {} of {} saved objects ({}) into {}",
            self.imported,
            self.sent,
            self.sources.join(", "),
            self.url
        )
    }
}

/// Credentials for HTTP basic authentication.
#[derive(Clone)]
pub struct Credentials {
    /// The user.
    pub username: String,
    /// The password, if any.
    pub password: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Runs `seclake dashboards import`: reads and checks the saved objects,
/// then imports them in one request.
pub fn import(args: &ImportArgs) -> Result<ImportSummary, DashboardsError> {
    let bundle = Bundle::new(&args.sources()?)?;
    let credentials = args.username.clone().map(|username| Credentials {
        username,
        password: args.password.clone(),
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| DashboardsError::Client(e.to_string()))?;
    runtime.block_on(import_bundle(&args.url, credentials.as_ref(), &bundle))
}

/// `POST <url>/api/saved_objects/_import?overwrite=true` with the bundle as
/// the multipart `file` part, as the Dashboards UI and `curl --form` send it.
pub async fn import_bundle(
    url: &str,
    credentials: Option<&Credentials>,
    bundle: &Bundle,
) -> Result<ImportSummary, DashboardsError> {
    let endpoint = import_endpoint(url)?;
    let client = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|e| DashboardsError::Client(innermost(&e)))?;
    let file = reqwest::multipart::Part::text(bundle.ndjson.clone())
        .file_name("seclake.ndjson")
        .mime_str("application/ndjson")
        .map_err(|e| DashboardsError::Client(innermost(&e)))?;
    let mut request = client
        .post(endpoint.clone())
        .header("osd-xsrf", "true")
        .multipart(reqwest::multipart::Form::new().part("file", file));
    if let Some(c) = credentials {
        request = request.basic_auth(&c.username, c.password.as_deref());
    }
    let unreachable = |e: reqwest::Error| DashboardsError::Unreachable {
        url: shown(&endpoint),
        reason: innermost(&e),
    };
    let response = request.send().await.map_err(unreachable)?;
    let status = response.status();
    let text = response.text().await.map_err(unreachable)?;
    if !status.is_success() {
        return Err(DashboardsError::Refused {
            status,
            message: refusal_message(status, &text),
        });
    }
    let result: ImportResponse =
        serde_json::from_str(&text).map_err(|e| DashboardsError::Response {
            reason: e.to_string(),
            body: excerpt(&text),
        })?;
    if !result.success || !result.errors.is_empty() {
        return Err(DashboardsError::Failed {
            failed: result.errors.into_iter().map(FailedObject::from).collect(),
            imported: result.success_count,
        });
    }
    Ok(ImportSummary {
        sent: bundle.len(),
        imported: result.success_count,
        sources: bundle.names.clone(),
        url: Url::parse(url).map_or_else(|_| url.to_owned(), |u| shown(&u)),
    })
}

/// The import endpoint under `url`, which may carry a base path (and
/// credentials, which reqwest sends as basic authentication).
fn import_endpoint(url: &str) -> Result<Url, DashboardsError> {
    let parsed = Url::parse(url);
    let invalid = |reason: String| DashboardsError::Url {
        url: parsed.as_ref().map_or_else(|_| url.to_owned(), shown),
        reason,
    };
    let mut endpoint = parsed.clone().map_err(|e| invalid(e.to_string()))?;
    if !matches!(endpoint.scheme(), "http" | "https") {
        return Err(invalid(format!("the scheme is {:?}", endpoint.scheme())));
    }
    endpoint
        .path_segments_mut()
        .map_err(|()| invalid("it has no path".to_owned()))?
        .pop_if_empty()
        .extend(["api", "saved_objects", "_import"]);
    endpoint.set_query(Some("overwrite=true"));
    Ok(endpoint)
}

/// `url` for messages: the password, if any, hidden.
fn shown(url: &Url) -> String {
    let mut url = url.clone();
    if url.password().is_some() {
        // Fails only for URLs without a host, which have no password.
        let _ = url.set_password(Some("***"));
    }
    url.to_string()
}

/// What a Dashboards error body says (`{"statusCode":…,"error":…,"message":…}`).
fn refusal_message(status: StatusCode, body: &str) -> String {
    let message = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| excerpt(body));
    let message = if message.is_empty() {
        "(no message)".to_owned()
    } else {
        message
    };
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            format!("{message} (check --username and --password)")
        }
        _ => message,
    }
}

fn excerpt(text: &str) -> String {
    const MAX: usize = 500;
    match text.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// The last cause of an error: "Connection refused" rather than "error
/// sending request for url".
fn innermost(error: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let text = cause.to_string();
    if error.is_timeout() && !text.contains("timed out") {
        format!("timed out ({text})")
    } else {
        text
    }
}

/// `SavedObjectsImportResponse`.
#[derive(Debug, Deserialize)]
struct ImportResponse {
    success: bool,
    #[serde(rename = "successCount")]
    success_count: u64,
    #[serde(default)]
    errors: Vec<ImportError>,
}

/// `SavedObjectsImportError`.
#[derive(Debug, Deserialize)]
struct ImportError {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    meta: ErrorMeta,
    error: ErrorDetail,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorMeta {
    #[serde(default)]
    title: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ErrorDetail {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    references: Vec<Reference>,
    #[serde(default)]
    destinations: Vec<Value>,
    #[serde(default, rename = "dataSourceName")]
    data_source_name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Reference {
    #[serde(rename = "type")]
    kind: String,
    id: String,
}

impl From<ImportError> for FailedObject {
    fn from(e: ImportError) -> FailedObject {
        let detail = e.error;
        let reason = match detail.kind.as_str() {
            "missing_references" => {
                let refs: Vec<String> = detail
                    .references
                    .iter()
                    .map(|r| format!("{} {}", r.kind, r.id))
                    .collect();
                format!("missing references: {}", refs.join(", "))
            }
            "conflict" => "conflicts with an existing object".to_owned(),
            "ambiguous_conflict" => format!(
                "conflicts with {} existing objects",
                detail.destinations.len()
            ),
            "unsupported_type" => "this Dashboards has no such saved object type".to_owned(),
            "missing_data_source" => format!(
                "missing data source {}",
                detail.data_source_name.as_deref().unwrap_or("(unnamed)")
            ),
            other => match detail.message {
                Some(message) => format!("{other}: {message}"),
                None => other.to_owned(),
            },
        };
        FailedObject {
            kind: e.kind,
            id: e.id,
            title: e.meta.title.or(e.title),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_keeps_a_base_path() {
        let url = |u: &str| import_endpoint(u).map(|e| e.to_string());
        assert_eq!(
            url("http://dash:5601").unwrap(),
            "http://dash:5601/api/saved_objects/_import?overwrite=true"
        );
        assert_eq!(
            url("https://example.com/_dashboards/").unwrap(),
            "https://example.com/_dashboards/api/saved_objects/_import?overwrite=true"
        );
        assert!(matches!(
            url("localhost:5601"),
            Err(DashboardsError::Url { .. })
        ));
        assert!(matches!(url("dash:5601"), Err(DashboardsError::Url { .. })));
    }

    #[test]
    fn messages_hide_a_password_in_the_url() {
        let url = Url::parse("http://admin:secret@dash:5601/").unwrap();
        assert_eq!(shown(&url), "http://admin:***@dash:5601/");
        let error = import_endpoint("ftp://admin:secret@dash/").unwrap_err();
        assert!(!error.to_string().contains("secret"), "{error}");
    }

    #[test]
    fn a_bundle_skips_blank_and_export_summary_lines_and_refuses_duplicates() {
        let source = |name: &str, text: &str| Source {
            name: name.to_owned(),
            text: text.to_owned(),
        };
        let object = r#"{"type":"visualization","id":"v","attributes":{"title":"V"}}"#;
        let bundle = Bundle::new(&[source(
            "a.ndjson",
            &format!("{object}\n\n{{\"exportedCount\":1,\"missingRefCount\":0}}\n"),
        )])
        .unwrap();
        assert_eq!(bundle.len(), 1);
        assert_eq!(bundle.ndjson, format!("{object}\n"));

        let twice = Bundle::new(&[source("a.ndjson", object), source("b.ndjson", object)]);
        assert!(
            matches!(twice, Err(DashboardsError::Duplicate { ref first, ref second, .. })
                if first == "a.ndjson" && second == "b.ndjson"),
            "{twice:?}"
        );
        let no_id = Bundle::new(&[source("a.ndjson", r#"{"type":"x","attributes":{}}"#)]);
        assert!(
            matches!(no_id, Err(DashboardsError::NotSavedObject { line: 1, .. })),
            "{no_id:?}"
        );
        assert!(matches!(
            Bundle::new(&[source("a.ndjson", "\n")]),
            Err(DashboardsError::Empty(_))
        ));
    }

    #[test]
    fn failures_name_the_object_and_the_reason() {
        let response: ImportResponse = serde_json::from_str(
            r#"{"success":false,"successCount":1,"errors":[
                {"id":"v1","type":"visualization","title":"Old","meta":{"title":"V one"},
                 "error":{"type":"missing_references","references":[{"type":"index-pattern","id":"p"}]}},
                {"id":"d","type":"dashboard","meta":{},
                 "error":{"type":"unknown","message":"boom","statusCode":500}}]}"#,
        )
        .unwrap();
        let failed: Vec<String> = response
            .errors
            .into_iter()
            .map(|e| FailedObject::from(e).to_string())
            .collect();
        assert_eq!(
            failed,
            [
                r#"visualization v1 ("V one"): missing references: index-pattern p"#,
                "dashboard d: unknown: boom",
            ]
        );
    }
}
