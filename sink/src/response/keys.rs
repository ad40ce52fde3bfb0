//! Leaked AWS access keys, deactivated with IAM: an access key id seen in
//! the app's logs (or named by a GuardDuty IAM finding) is looked up with
//! `GetAccessKeyLastUsed`, which names its user, and set `Inactive` with
//! `UpdateAccessKey`, unless the user is protected. Off by default; a dry
//! run looks the key up and changes nothing.

use std::fmt;

use aws_sdk_iam::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_iam::types::StatusType;
use serde::Deserialize;

/// What is done about a leaked key (`[response] leaked_keys`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyMode {
    /// Nothing (the default).
    #[default]
    Off,
    /// Look the key up, audit and alert what would be done.
    DryRun,
    /// Deactivate it.
    Disable,
}

/// Why IAM could not be asked.
#[derive(Debug, thiserror::Error)]
#[error("IAM {operation} for {key}: {message}")]
pub struct KeyError {
    /// The call.
    pub operation: &'static str,
    /// The access key id.
    pub key: String,
    /// What IAM said.
    pub message: String,
}

/// What happened to one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOutcome {
    /// Set `Inactive`.
    Disabled {
        /// Its IAM user.
        user: String,
    },
    /// Would have been set `Inactive` (a dry run).
    WouldDisable {
        /// Its IAM user.
        user: String,
    },
    /// Its user is in `protected_users`; left alone.
    Protected {
        /// Its IAM user.
        user: String,
    },
    /// Not a key of this account (or no user owns it: a root key).
    NotFound,
}

impl fmt::Display for KeyOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyOutcome::Disabled { user } => write!(f, "deactivated (user {user})"),
            KeyOutcome::WouldDisable { user } => {
                write!(f, "would be deactivated (user {user}; dry run)")
            }
            KeyOutcome::Protected { user } => {
                write!(f, "left active: user {user} is in protected_users")
            }
            KeyOutcome::NotFound => f.write_str("not a user's key in this account; nothing done"),
        }
    }
}

/// The account's access keys, through IAM.
#[derive(Debug, Clone)]
pub struct AccessKeys {
    client: aws_sdk_iam::Client,
    protected: Vec<String>,
}

impl AccessKeys {
    /// Keys reached through `shared`, at `endpoint` when given; the users in
    /// `protected` are never touched.
    pub fn connect(
        shared: &aws_config::SdkConfig,
        endpoint: Option<&str>,
        protected: &[String],
    ) -> AccessKeys {
        let mut iam = aws_sdk_iam::config::Builder::from(shared);
        if let Some(endpoint) = endpoint {
            iam = iam.endpoint_url(endpoint);
        }
        AccessKeys::new(aws_sdk_iam::Client::from_conf(iam.build()), protected)
    }

    /// Keys reached through `client`.
    pub fn new(client: aws_sdk_iam::Client, protected: &[String]) -> AccessKeys {
        AccessKeys {
            client,
            protected: protected.to_vec(),
        }
    }

    /// Deactivates `key` (or, with `dry_run`, says it would).
    pub async fn deactivate(&self, key: &str, dry_run: bool) -> Result<KeyOutcome, KeyError> {
        let used = self
            .client
            .get_access_key_last_used()
            .access_key_id(key)
            .send()
            .await;
        let user = match used {
            Ok(answer) => answer.user_name().map(str::to_owned),
            Err(e) if is_not_found(&e) => None,
            Err(e) => return Err(error("GetAccessKeyLastUsed", key, &e)),
        };
        let Some(user) = user else {
            return Ok(KeyOutcome::NotFound);
        };
        if self.protected.contains(&user) {
            return Ok(KeyOutcome::Protected { user });
        }
        if dry_run {
            return Ok(KeyOutcome::WouldDisable { user });
        }
        self.client
            .update_access_key()
            .user_name(&user)
            .access_key_id(key)
            .status(StatusType::Inactive)
            .send()
            .await
            .map_err(|e| error("UpdateAccessKey", key, &e))?;
        Ok(KeyOutcome::Disabled { user })
    }
}

fn is_not_found<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.as_service_error()
        .and_then(ProvideErrorMetadata::code)
        .is_some_and(|c| matches!(c, "NoSuchEntity" | "AccessDenied" | "InvalidClientTokenId"))
}

fn error<E, R>(operation: &'static str, key: &str, e: &SdkError<E, R>) -> KeyError
where
    E: std::error::Error + 'static,
    R: fmt::Debug,
{
    KeyError {
        operation,
        key: key.to_owned(),
        message: DisplayErrorContext(e).to_string(),
    }
}

/// The long-term access key ids (`AKIA` and 16 of `[A-Z0-9]`) in `text`.
/// Temporary `ASIA` keys are left out: they cannot be deactivated, only
/// left to expire.
pub fn access_keys(text: &str) -> impl Iterator<Item = &str> {
    let bytes = text.as_bytes();
    memchr::memmem::find_iter(bytes, b"AKIA").filter_map(move |at| {
        let end = at + 20;
        let key = bytes.get(at..end)?;
        let body_ok = key[4..]
            .iter()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        let bounded = |b: Option<&u8>| !b.is_some_and(u8::is_ascii_alphanumeric);
        (body_ok
            && bounded(at.checked_sub(1).and_then(|i| bytes.get(i)))
            && bounded(bytes.get(end)))
        .then(|| &text[at..end])
    })
}

#[cfg(test)]
mod tests {
    use super::access_keys;

    #[test]
    fn long_term_key_ids_are_found_whole_and_temporary_ones_left_out() {
        let text = "key AKIA3DCHRDVTC46OXWKU rejected; (access_key_id=AKIA2LWPDQZKLODRL7F6/***) \
                    ASIAQWERTYUIOPASDFGH XAKIA3DCHRDVTC46OXWKU AKIA3DCHRDVTC46OXWKUZ AKIAshort";
        assert_eq!(
            access_keys(text).collect::<Vec<_>>(),
            vec!["AKIA3DCHRDVTC46OXWKU", "AKIA2LWPDQZKLODRL7F6"]
        );
    }
}
