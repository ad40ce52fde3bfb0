//! The upload of the report files to `<prefix>/reports/dt=YYYY-MM-DD/`.

use chrono::NaiveDate;
use object_store::{Attribute, Attributes, PutOptions, PutPayload};
use seclake_sink::SinkError;
use seclake_sink::store::{Location, S3Options};
use serde::Deserialize;
use url::Url;

use super::{Channel, Delivered, DeliveryError, ReportFile, check_endpoint, check_region};

const URL_KEY: &str = "report.deliver.s3.url";
const ENDPOINT_KEY: &str = "report.deliver.s3.endpoint";
const REGION_KEY: &str = "report.deliver.s3.region";

/// `[report.deliver.s3]`: the S3 prefix the report files are uploaded to,
/// with the AWS credential chain (environment, profiles and SSO, web
/// identity, ECS/EKS, instance metadata).
///
/// Slack links the uploaded HTML page through the S3 console
/// (`https://s3.console.aws.amazon.com/s3/object/<bucket>?region=…&prefix=<key>`),
/// or as a path-style URL under `endpoint` when one is set. Not a presigned
/// URL: anyone holding one reads the report (channel guests, forwarded
/// messages, Slack's link previews), and it expires within hours with role
/// credentials, seven days at most, so older messages would link nothing.
/// The console asks for an AWS sign-in and IAM decides who reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Target {
    /// `s3://bucket/prefix`: the files go to `<prefix>/reports/dt=YYYY-MM-DD/<name>`.
    pub url: String,
    /// A custom endpoint (MinIO, moto, LocalStack), e.g. `http://127.0.0.1:5000`.
    pub endpoint: Option<String>,
    /// The bucket's region; default from `AWS_REGION` / `AWS_DEFAULT_REGION`.
    pub region: Option<String>,
}

impl S3Target {
    /// Checks the settings without touching the network.
    pub fn check(&self) -> Result<(), DeliveryError> {
        self.bucket()?;
        check_endpoint(Channel::S3, ENDPOINT_KEY, self.endpoint.as_deref())?;
        check_region(Channel::S3, REGION_KEY, self.region.as_deref())
    }

    /// The bucket `url` names; only `s3://` URLs are accepted.
    fn bucket(&self) -> Result<String, DeliveryError> {
        let bad = |why: String| DeliveryError::Config {
            channel: Channel::S3,
            key: URL_KEY,
            why,
        };
        let url = &self.url;
        let parsed = Url::parse(url).map_err(|e| bad(format!("{url:?} is not a URL: {e}")))?;
        if parsed.scheme() != "s3" {
            return Err(bad(format!("{url:?} is not an s3://bucket/prefix URL")));
        }
        match parsed.host_str() {
            Some(bucket) if !bucket.is_empty() => Ok(bucket.to_owned()),
            _ => Err(bad(format!("{url:?} names no bucket"))),
        }
    }

    /// The region the console link names: the target's, else the one
    /// object_store takes from the environment.
    fn region(&self) -> Option<String> {
        self.region.clone().or_else(|| {
            ["AWS_REGION", "AWS_DEFAULT_REGION"]
                .into_iter()
                .find_map(|var| std::env::var(var).ok().filter(|r| !r.is_empty()))
        })
    }

    /// A browser link to `key` in `bucket`.
    fn web_link(&self, bucket: &str, key: &str) -> Option<String> {
        let mut url = match &self.endpoint {
            // check_endpoint accepted it, so it has a host and can be a base.
            Some(endpoint) => Url::parse(endpoint).ok()?,
            None => Url::parse("https://s3.console.aws.amazon.com/s3/object/").ok()?,
        };
        if self.endpoint.is_some() {
            url.path_segments_mut()
                .ok()?
                .pop_if_empty()
                .push(bucket)
                .extend(key.split('/'));
        } else {
            url.path_segments_mut().ok()?.pop_if_empty().push(bucket);
            let mut query = url.query_pairs_mut();
            if let Some(region) = self.region() {
                query.append_pair("region", &region);
            }
            query.append_pair("prefix", key);
        }
        Some(url.into())
    }
}

/// The report's HTML page once uploaded, for the Slack message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Page {
    /// `s3://bucket/key`.
    pub s3_url: String,
    /// Where a browser opens it (see [`S3Target`]).
    pub web_url: Option<String>,
}

/// What [`upload`] did.
pub(super) struct Uploaded {
    pub delivered: Delivered,
    /// The uploaded `.html` file, if there was one.
    pub page: Option<Page>,
}

/// Uploads every file under `<prefix>/reports/dt=<date>/`, each with its
/// content type.
pub(super) async fn upload(
    target: &S3Target,
    date: NaiveDate,
    files: &[ReportFile],
) -> Result<Uploaded, DeliveryError> {
    target.check()?;
    let bucket = target.bucket()?;
    // Refuse a bad file before uploading any, rather than half the report.
    let report_error = |why: String| DeliveryError::Report {
        channel: Channel::S3,
        why,
    };
    if files.is_empty() {
        return Err(report_error("the report has no file to upload".to_owned()));
    }
    if let Some(file) = files
        .iter()
        .find(|file| matches!(file.name.as_str(), "" | "." | "..") || file.name.contains('/'))
    {
        return Err(report_error(format!(
            "{:?} is not a plain file name",
            file.name
        )));
    }
    let options = S3Options {
        endpoint: target.endpoint.clone(),
        region: target.region.clone(),
    };
    let location =
        Location::open(URL_KEY, &target.url, &options).map_err(|e| DeliveryError::Config {
            channel: Channel::S3,
            key: URL_KEY,
            why: match e {
                SinkError::Config { why, .. } => why,
                other => other.to_string(),
            },
        })?;
    let html = ReportFile::find(files, "html").map(|file| file.name.as_str());
    let mut urls = Vec::with_capacity(files.len());
    let mut page = None;
    for file in files {
        let path = location.child(&format!("reports/dt={date}/{}", file.name));
        let url = format!("s3://{bucket}/{path}");
        let options = PutOptions {
            attributes: Attributes::from_iter([(Attribute::ContentType, file.content_type)]),
            ..PutOptions::default()
        };
        location
            .store
            .put_opts(&path, PutPayload::from(file.bytes.clone()), options)
            .await
            .map_err(|source| DeliveryError::Upload {
                url: url.clone(),
                source,
            })?;
        if html == Some(file.name.as_str()) {
            page = Some(Page {
                s3_url: url.clone(),
                web_url: target.web_link(&bucket, path.as_ref()),
            });
        }
        urls.push(url);
    }
    Ok(Uploaded {
        delivered: Delivered::S3 { urls },
        page,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(endpoint: Option<&str>, region: Option<&str>) -> S3Target {
        S3Target {
            url: "s3://reports-bucket/sec".to_owned(),
            endpoint: endpoint.map(str::to_owned),
            region: region.map(str::to_owned),
        }
    }

    #[test]
    fn the_console_link_names_bucket_region_and_key() {
        let link = target(None, Some("eu-west-1"))
            .web_link("reports-bucket", "sec/reports/dt=2026-11-29/report.html")
            .unwrap();
        assert_eq!(
            link,
            "https://s3.console.aws.amazon.com/s3/object/reports-bucket\
             ?region=eu-west-1&prefix=sec%2Freports%2Fdt%3D2026-11-29%2Freport.html"
        );
    }

    #[test]
    fn a_custom_endpoint_links_the_object_path_style() {
        let link = target(Some("http://127.0.0.1:5000/"), Some("us-east-1"))
            .web_link("reports-bucket", "sec/reports/dt=2026-11-29/report.html")
            .unwrap();
        assert_eq!(
            link,
            "http://127.0.0.1:5000/reports-bucket/sec/reports/dt=2026-11-29/report.html"
        );
    }
}
