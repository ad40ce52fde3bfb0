//! `docker-compose.yml` describes the topology `scripts/services` runs here:
//! every server seclake needs, on the same loopback ports, every image pinned,
//! and the pipeline image built by the repository's Dockerfile. (The compose
//! loader's own checks run in `scripts/test`: `docker compose config`, or
//! `tools/compose-check` where the plugin is missing.)

use std::path::{Path, PathBuf};

use serde_norway::{Mapping, Value};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn compose() -> Mapping {
    let text = std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap();
    let value: Value = serde_norway::from_str(&text).unwrap();
    value["services"].as_mapping().unwrap().clone()
}

fn service<'a>(services: &'a Mapping, name: &str) -> &'a Value {
    services
        .get(name)
        .unwrap_or_else(|| panic!("docker-compose.yml has no service `{name}`"))
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .map(|items| {
            items
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn every_service_seclake_needs_is_there() {
    let services = compose();
    for name in [
        "kafka",
        "moto",
        "kinesis",
        "opensearch",
        "opensearch-dashboards",
        "dashboards-init",
        "seclake",
        "commerce-api",
        "report",
        "prometheus",
        "grafana",
    ] {
        service(&services, name);
    }
    assert_eq!(
        strings(&service(&services, "report")["profiles"]),
        ["report"],
        "the report job runs only when asked for"
    );
}

#[test]
fn every_image_is_pinned_to_a_version() {
    let services = compose();
    for (name, spec) in &services {
        let name = name.as_str().unwrap();
        let image = spec["image"]
            .as_str()
            .unwrap_or_else(|| panic!("service `{name}` names no image"));
        let (_, tag) = image
            .rsplit_once(':')
            .unwrap_or_else(|| panic!("service `{name}`: image `{image}` has no tag"));
        assert!(
            tag.trim_start_matches('v')
                .starts_with(|c: char| c.is_ascii_digit())
                && tag.contains('.'),
            "service `{name}`: image `{image}` is not pinned to a version"
        );
    }
    let seclake = service(&services, "seclake");
    assert_eq!(
        seclake["image"].as_str(),
        Some(concat!("seclake:", env!("CARGO_PKG_VERSION"))),
        "the pipeline image carries the crate's version"
    );
}

/// The ports `scripts/services` serves (tests' defaults), each published on
/// loopback only, as the recipe in `scripts/services.d` says.
#[test]
fn servers_listen_where_scripts_services_puts_them() {
    let services = compose();
    for (name, port, recipe) in [
        ("kafka", 9092, "kafka.sh"),
        ("opensearch", 9200, "opensearch.sh"),
        ("moto", 5000, "moto.sh"),
        ("kinesis", 4567, "kinesis.sh"),
    ] {
        let ports = strings(&service(&services, name)["ports"]);
        assert_eq!(ports, [format!("127.0.0.1:{port}:{port}")], "{name}");
        let script =
            std::fs::read_to_string(repo().join("scripts/services.d").join(recipe)).unwrap();
        assert!(
            script.contains(&port.to_string()),
            "scripts/services.d/{recipe} serves {name} on another port than {port}"
        );
    }
    for (name, spec) in &services {
        for published in strings(&spec["ports"]) {
            assert!(
                published.starts_with("127.0.0.1:"),
                "service `{}` publishes {published} beyond loopback",
                name.as_str().unwrap()
            );
        }
    }
}

/// Dashboards matches the OpenSearch it reads (version, security plugin off
/// on both), and `dashboards-init` imports the seclake saved objects into it
/// once it is healthy.
#[test]
fn dashboards_match_opensearch_and_get_the_seclake_saved_objects() {
    let services = compose();
    let opensearch = service(&services, "opensearch");
    let dashboards = service(&services, "opensearch-dashboards");
    let tag = |spec: &Value| {
        let image = spec["image"].as_str().unwrap();
        image.rsplit_once(':').unwrap().1.to_owned()
    };
    assert_eq!(tag(dashboards), tag(opensearch), "the same 2.x release");
    assert!(
        dashboards["image"]
            .as_str()
            .unwrap()
            .starts_with("opensearchproject/opensearch-dashboards:")
    );
    assert_eq!(strings(&dashboards["ports"]), ["127.0.0.1:5601:5601"]);
    assert_eq!(
        opensearch["environment"]["DISABLE_SECURITY_PLUGIN"].as_str(),
        Some("true")
    );
    let environment = &dashboards["environment"];
    assert_eq!(
        environment["DISABLE_SECURITY_DASHBOARDS_PLUGIN"].as_str(),
        Some("true"),
        "OpenSearch runs without its security plugin, so Dashboards must too"
    );
    assert!(
        environment["OPENSEARCH_HOSTS"]
            .as_str()
            .unwrap()
            .contains("http://opensearch:9200")
    );
    assert!(
        dashboards["healthcheck"]["test"].is_sequence(),
        "dashboards-init waits for a health check"
    );

    let init = service(&services, "dashboards-init");
    assert_eq!(init["image"], service(&services, "seclake")["image"]);
    assert_eq!(
        strings(&init["command"]),
        [
            "dashboards",
            "import",
            "--url",
            "http://opensearch-dashboards:5601"
        ]
    );
    assert_eq!(
        init["depends_on"]["opensearch-dashboards"]["condition"].as_str(),
        Some("service_healthy")
    );
    assert_eq!(init["restart"].as_str(), Some("no"), "a one-shot job");
}

#[test]
fn the_pipeline_gets_the_endpoint_variables_the_tests_use() {
    let services = compose();
    let environment = service(&services, "seclake")["environment"]
        .as_mapping()
        .unwrap();
    for var in [
        "SECLAKE_KAFKA_BROKERS",
        "SECLAKE_S3_ENDPOINT",
        "SECLAKE_OPENSEARCH_URL",
        "SECLAKE_KINESIS_ENDPOINT",
    ] {
        assert!(environment.contains_key(var), "seclake lacks {var}");
    }
}

#[test]
fn mounted_files_exist() {
    let services = compose();
    for (name, spec) in &services {
        for volume in strings(&spec["volumes"]) {
            let Some(relative) = volume.strip_prefix("./") else {
                continue; // a named volume
            };
            let host = relative.split(':').next().unwrap();
            assert!(
                repo().join(host).exists(),
                "service `{}` mounts ./{host}, which is missing",
                name.as_str().unwrap()
            );
        }
    }
}

#[test]
fn the_image_is_multi_stage_and_runs_as_non_root() {
    let services = compose();
    assert_eq!(service(&services, "seclake")["build"].as_str(), Some("."));
    let dockerfile = std::fs::read_to_string(Path::new(&repo()).join("Dockerfile")).unwrap();
    let stages = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .count();
    assert!(stages >= 2, "a build stage and a runtime stage");
    let user = dockerfile
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("the runtime stage sets USER");
    assert!(
        !user.starts_with("root") && !user.starts_with("0"),
        "runs as {user}"
    );
}

/// The pipeline's config in the compose topology is valid as it stands and
/// reads the topics `kafka-init` creates.
#[test]
fn the_compose_pipeline_config_is_valid_and_reads_the_created_topics() {
    let config = seclake::config::Config::load(&repo().join("deploy/seclake.toml"))
        .expect("deploy/seclake.toml is valid");
    let services = compose();
    let init = strings(&service(&services, "kafka-init")["command"]).join("\n");
    for source in &config.sources {
        let seclake::config::SourceConfig::Kafka(kafka) = source else {
            panic!("the compose pipeline reads Kafka only: {source:?}");
        };
        assert!(
            init.contains(&kafka.topic),
            "kafka-init does not create {}",
            kafka.topic
        );
    }
    assert_eq!(config.sources.len(), 3, "one topic per format");
    let pipeline = service(&services, "seclake");
    let opensearch_url = pipeline["environment"]["SECLAKE_OPENSEARCH_URL"]
        .as_str()
        .expect("the pipeline is told where OpenSearch is");
    assert!(
        config.opensearch.is_some(),
        "the compose pipeline indexes into OpenSearch"
    );
    assert!(opensearch_url.starts_with("http://opensearch:9200"));
    assert!(
        pipeline["depends_on"]["opensearch"]["condition"] == "service_healthy",
        "the pipeline waits for OpenSearch: its templates are installed at start"
    );
}
