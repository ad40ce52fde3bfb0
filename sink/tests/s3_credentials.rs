//! S3 credentials come from the standard AWS chain (aws-config), so a named
//! profile in the shared credentials file is enough, as on a laptop with
//! `aws configure` or SSO. Against the moto server `scripts/services up`
//! starts (`SECLAKE_S3_ENDPOINT` to point elsewhere).

use object_store::{ObjectStoreExt as _, PutPayload};
use seclake_sink::Location;
use seclake_sink::store::S3Options;

#[tokio::test]
async fn a_named_profile_is_the_only_credential_needed() {
    let Some(endpoint) =
        seclake_fixtures::services::service("moto", "SECLAKE_S3_ENDPOINT", "http://127.0.0.1:5000")
    else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let credentials = home.path().join("credentials");
    std::fs::write(
        &credentials,
        "[seclake-test]\naws_access_key_id = AKIAPROFILEONLY\naws_secret_access_key = from-the-profile\n",
    )
    .unwrap();
    let config = home.path().join("config");
    std::fs::write(&config, "[profile seclake-test]\nregion = us-east-1\n").unwrap();
    // SAFETY (here and below): the only test in this binary, and it changes
    // the environment only while no request of its own is in flight.
    unsafe {
        for var in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        ] {
            std::env::remove_var(var);
        }
        std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", &credentials);
        std::env::set_var("AWS_CONFIG_FILE", &config);
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    }

    let bucket = seclake_fixtures::services::unique_name("seclake-creds");
    seclake_fixtures::services::create_bucket(&endpoint, &bucket);
    let options = S3Options {
        endpoint: Some(endpoint),
        region: Some("us-east-1".to_owned()),
    };
    let url = format!("s3://{bucket}/lake");

    // A profile the files don't have: no credentials anywhere in the chain.
    unsafe { std::env::set_var("AWS_PROFILE", "absent") };
    let location = Location::open("lake.url", &url, &options).unwrap();
    let refused = location
        .store
        .put(&location.child("probe"), PutPayload::from_static(b"x"))
        .await
        .expect_err("no credentials, no write");
    assert!(
        refused.to_string().contains("no AWS credentials"),
        "{refused}"
    );

    unsafe { std::env::set_var("AWS_PROFILE", "seclake-test") };
    let location = Location::open("lake.url", &url, &options).unwrap();
    let path = location.child("probe");
    location
        .store
        .put(
            &path,
            PutPayload::from_static(b"written with the profile's key"),
        )
        .await
        .expect("the profile's credentials sign the request");
    let read = location
        .store
        .get(&path)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(read.as_ref(), b"written with the profile's key");
}
