//! Object stores from URLs: `file:///abs/path` or `s3://bucket/prefix`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_config::BehaviorVersion;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use object_store::aws::{AmazonS3Builder, AwsCredential};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{CredentialProvider, ObjectStore};
use url::Url;

use crate::SinkError;

/// Where a sink writes: a store and the prefix inside it.
#[derive(Debug, Clone)]
pub struct Location {
    /// The object store.
    pub store: Arc<dyn ObjectStore>,
    /// The prefix every object goes under (empty for a store rooted at the prefix).
    pub prefix: Path,
    /// The URL it was opened from, for messages.
    pub url: String,
}

/// S3 settings beside the URL; credentials come from the standard AWS chain
/// (environment, profiles and SSO, web identity, ECS/EKS, instance metadata).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Options {
    /// A custom endpoint (MinIO, moto, LocalStack), e.g. `http://127.0.0.1:5000`.
    pub endpoint: Option<String>,
    /// The bucket's region; default from `AWS_REGION` / `AWS_DEFAULT_REGION`.
    pub region: Option<String>,
}

/// Checks that `url` is a usable `file://` or `s3://` URL without touching it.
pub fn check_url(key: &'static str, url: &str) -> Result<(), SinkError> {
    parse_url(key, url).map(drop)
}

/// Parses a lake or dead-letter URL, refusing what `Location::open` can't open.
fn parse_url(key: &'static str, url: &str) -> Result<Url, SinkError> {
    let bad = |why: String| SinkError::Config { key, why };
    let parsed = Url::parse(url).map_err(|e| bad(format!("{url:?} is not a URL: {e}")))?;
    match parsed.scheme() {
        "file" if parsed.to_file_path().is_err() => {
            Err(bad(format!("{url:?} is not an absolute file:// path")))
        }
        "s3" if parsed.host_str().is_none_or(str::is_empty) => {
            Err(bad(format!("{url:?} names no bucket")))
        }
        "file" | "s3" => Ok(parsed),
        other => Err(bad(format!(
            "unsupported scheme {other:?} in {url:?}: use file:///absolute/path or s3://bucket/prefix"
        ))),
    }
}

impl Location {
    /// Opens the store a `file://` or `s3://` URL names. A local directory is
    /// created when missing. `key` names the config key in errors.
    pub fn open(key: &'static str, url: &str, s3: &S3Options) -> Result<Location, SinkError> {
        let bad = |why: String| SinkError::Config { key, why };
        let parsed = parse_url(key, url)?;
        match parsed.scheme() {
            "file" => {
                let dir = parsed
                    .to_file_path()
                    .map_err(|()| bad(format!("{url:?} is not an absolute file:// path")))?;
                std::fs::create_dir_all(&dir)
                    .map_err(|e| bad(format!("cannot create {}: {e}", dir.display())))?;
                let store = LocalFileSystem::new_with_prefix(&dir)
                    .map_err(|e| bad(format!("cannot open {}: {e}", dir.display())))?;
                Ok(Location {
                    store: Arc::new(store),
                    prefix: Path::default(),
                    url: url.to_owned(),
                })
            }
            _ => {
                // parse_url accepted it, so this is s3:// with a bucket.
                let bucket = parsed.host_str().unwrap_or_default();
                let mut builder = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_credentials(Arc::new(AwsChain::default()));
                if let Some(endpoint) = &s3.endpoint {
                    builder = builder
                        .with_endpoint(endpoint)
                        .with_allow_http(endpoint.starts_with("http://"))
                        .with_virtual_hosted_style_request(false);
                }
                if let Some(region) = &s3.region {
                    builder = builder.with_region(region);
                }
                let store = builder
                    .build()
                    .map_err(|e| bad(format!("cannot open {url:?}: {e}")))?;
                Ok(Location {
                    store: Arc::new(store),
                    prefix: Path::from(parsed.path().trim_matches('/')),
                    url: url.to_owned(),
                })
            }
        }
    }

    /// The full object path of `relative` under the prefix.
    pub fn child(&self, relative: &str) -> Path {
        if self.prefix.as_ref().is_empty() {
            Path::from(relative)
        } else {
            Path::from(format!("{}/{relative}", self.prefix))
        }
    }
}

/// Credentials from aws-config's default chain, for object_store, cached until
/// [`REFRESH_AHEAD`] before they expire. The chain is built on first use, in
/// the runtime that makes the first request.
#[derive(Debug, Default)]
struct AwsChain {
    chain: tokio::sync::OnceCell<Option<SharedCredentialsProvider>>,
    cached: tokio::sync::Mutex<Option<(Arc<AwsCredential>, Option<SystemTime>)>>,
}

/// Temporary credentials are renewed this long before they expire.
const REFRESH_AHEAD: Duration = Duration::from_secs(300);

#[async_trait::async_trait]
impl CredentialProvider for AwsChain {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        let mut cached = self.cached.lock().await;
        if let Some((credential, expiry)) = cached.as_ref()
            && expiry.is_none_or(|at| SystemTime::now() + REFRESH_AHEAD < at)
        {
            return Ok(Arc::clone(credential));
        }
        let chain = self
            .chain
            .get_or_init(|| async {
                aws_config::load_defaults(BehaviorVersion::latest())
                    .await
                    .credentials_provider()
            })
            .await;
        let failed = |why: String| object_store::Error::Generic {
            store: "S3",
            source: why.into(),
        };
        let chain = chain
            .as_ref()
            .ok_or_else(|| failed("the AWS credential chain is empty".to_owned()))?;
        let credentials = chain.provide_credentials().await.map_err(|e| {
            failed(format!(
                "no AWS credentials: {}",
                aws_smithy_types::error::display::DisplayErrorContext(e)
            ))
        })?;
        let credential = Arc::new(AwsCredential {
            key_id: credentials.access_key_id().to_owned(),
            secret_key: credentials.secret_access_key().to_owned(),
            token: credentials.session_token().map(str::to_owned),
        });
        *cached = Some((Arc::clone(&credential), credentials.expiry()));
        Ok(credential)
    }
}
