//! The shipped Fluent Bit files held against the agent's real defaults and output:
//! the tail glob against the names the file sink really produces, the parser's time
//! format against lines the pipeline really wrote, the CloudWatch names against the
//! config crate's, the tail timings against the rotation timings, and the classic and
//! YAML files against each other.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use config::{AgentConfig, defaults};
use datapath_common::abi::{
    DIRECTION_INGRESS, FAMILY_IPV4, FlowEvent, PROTO_UDP, REASON_NO_RULE_MATCHED, VERDICT_DENY,
};
use exporter::clock::WallClock;
use exporter::sink::rotated_file_name;
use exporter::{EnrichmentSnapshot, Pipeline, PipelineConfig, snapshot_handle};
use fluent_bit_config::{Config, SectionKind, time_format, vars};

fn live_name() -> &'static str {
    Path::new(defaults::LOG_FILE)
        .file_name()
        .and_then(|n| n.to_str())
        .expect("default log file has a name")
}

fn log_dir() -> &'static Path {
    Path::new(defaults::LOG_FILE)
        .parent()
        .expect("default log file has a directory")
}

/// The tail input's Path split into its directory and file-name pattern.
fn tail_glob(name: &str, cfg: &Config) -> (String, glob::Pattern) {
    let path = get(name, &tail(name, cfg), "path").to_string();
    let (dir, file) = path.rsplit_once('/').expect("absolute Path");
    let pattern = glob::Pattern::new(file).unwrap_or_else(|e| panic!("{name}: {e}"));
    (dir.to_string(), pattern)
}

/// The names a rotated file of the live file takes over its life, from the sink's own
/// naming function, plus the sink's temporary names.
fn rotated_and_temporary_names() -> Vec<String> {
    let live = live_name();
    let mut names = Vec::new();
    for seq in [1, 2, 9, 10, 12_345_678, 99_999_999, 100_000_000] {
        for gz in [false, true] {
            names.push(rotated_file_name(live, seq, gz));
        }
        names.push(format!("{}.tmp", rotated_file_name(live, seq, true)));
    }
    names.push(format!(".{live}.new"));
    names
}

#[test]
fn tail_glob_matches_the_live_file_and_none_of_its_rotated_names() {
    let rotated = rotated_and_temporary_names();
    assert!(rotated.len() > 20);
    for (name, cfg) in all_configs() {
        let (dir, pattern) = tail_glob(name, &cfg);
        assert_eq!(Path::new(&dir), log_dir(), "{name}: tail directory");
        assert!(
            pattern.matches(live_name()),
            "{name}: {pattern} misses the live file"
        );
        for r in &rotated {
            assert!(!pattern.matches(r), "{name}: {pattern} matches rotated {r}");
        }
    }
}

fn event(i: u64) -> FlowEvent {
    let mut src = [0; 16];
    src[..4].copy_from_slice(&[10, 1, 2, (i % 250) as u8]);
    let mut dst = [0; 16];
    dst[..4].copy_from_slice(&[192, 168, 87, 155]);
    FlowEvent {
        // Milliseconds from .000 to past .900, crossing midnight.
        timestamp_ns: i * 12_345_679,
        bytes: 74 + i,
        count: 1,
        family: FAMILY_IPV4,
        protocol: PROTO_UDP,
        direction: DIRECTION_INGRESS,
        verdict: VERDICT_DENY,
        reason: REASON_NO_RULE_MATCHED,
        src_addr: src,
        dst_addr: dst,
        src_port: 38_971,
        dst_port: 53,
        ..Default::default()
    }
}

/// 2024-02-28T23:59:59Z: the events cross midnight into a leap day.
const CLOCK_OFFSET_NS: i64 = 1_709_164_799_000_000_000;

/// Runs the agent's real pipeline into `dir` with tiny files so it rotates and
/// compresses; returns the events written.
fn write_rotating_flow_log(dir: &Path, compress: bool) -> Vec<FlowEvent> {
    let mut cfg = PipelineConfig::default();
    cfg.sink.compress = compress;
    cfg.sink.max_file_bytes = 4096;
    cfg.sink.min_file_age = Duration::ZERO;
    cfg.sink.compress_grace = Duration::ZERO;
    let live = dir.join(live_name());
    let mut pipeline = Pipeline::new(cfg, snapshot_handle(EnrichmentSnapshot::default()), &live)
        .expect("pipeline opens in a temp dir");
    pipeline.set_clock(WallClock::fixed(CLOCK_OFFSET_NS));
    let mut events = Vec::new();
    for round in 0..4 {
        for i in 0..20 {
            let ev = event(round * 20 + i);
            pipeline.on_event(&ev);
            events.push(ev);
        }
        // Rotation happens before a write once the file is past its size.
        pipeline.flush();
    }
    drop(pipeline);
    events
}

fn file_names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .expect("temp dir readable")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

#[test]
fn tail_glob_finds_only_the_live_file_among_files_the_sink_really_rotated() {
    let dir = tempfile::tempdir().unwrap();
    write_rotating_flow_log(dir.path(), true);
    // Compression runs on the sink's housekeeping thread; wait (bounded) for one .gz.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !file_names(dir.path()).iter().any(|n| n.ends_with(".gz")) {
        assert!(
            Instant::now() < deadline,
            "no rotated file was compressed: {:?}",
            file_names(dir.path())
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let names = file_names(dir.path());
    let rotated: Vec<&String> = names.iter().filter(|n| *n != live_name()).collect();
    assert!(rotated.len() >= 3, "expected rotations, found {names:?}");

    for (name, cfg) in all_configs() {
        let (_, pattern) = tail_glob(name, &cfg);
        let on_disk = format!("{}/{}", dir.path().display(), pattern.as_str());
        let found: Vec<String> = glob::glob(&on_disk)
            .expect("valid glob")
            .map(|p| {
                p.expect("readable")
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(found, [live_name()], "{name}: glob over {names:?}");
    }
}

#[test]
fn parser_time_format_parses_the_timestamps_the_agent_writes() {
    let dir = tempfile::tempdir().unwrap();
    let events = write_rotating_flow_log(dir.path(), false);
    let text = read_all_uncompressed(dir.path());
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), events.len(), "every event became one line");

    for (name, cfg) in all_configs() {
        let input = tail(name, &cfg);
        let parser_name = get(name, &input, "parser");
        let parser = cfg
            .find(SectionKind::Parser, parser_name)
            .unwrap_or_else(|| panic!("{name}: parser {parser_name} not defined"));
        assert_eq!(get(name, parser, "format"), "json", "{name}");
        let key = get(name, parser, "time_key");
        let strftime = time_format::to_strftime(get(name, parser, "time_format"))
            .unwrap_or_else(|e| panic!("{name}: {e}"));

        let mut parsed_ms: Vec<i64> = Vec::new();
        for line in &lines {
            let record: serde_json::Value = serde_json::from_str(line).expect("JSON line");
            let stamp = record[key]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: line has no string {key:?}: {line}"));
            let civil = jiff::fmt::strtime::parse(&strftime, stamp)
                .and_then(|t| t.to_datetime())
                .unwrap_or_else(|e| panic!("{name}: {strftime:?} cannot parse {stamp:?}: {e}"));
            // Fluent Bit reads a time without a zone as UTC (Time_Offset unset).
            let instant = civil
                .to_zoned(jiff::tz::TimeZone::UTC)
                .expect("UTC is total")
                .timestamp();
            parsed_ms.push(instant.as_millisecond());
        }
        let want: Vec<i64> = events
            .iter()
            .map(|e| WallClock::fixed(CLOCK_OFFSET_NS).unix_ms(e.timestamp_ns))
            .collect();
        // Lines are in write order, one per event.
        assert_eq!(parsed_ms, want, "{name}: parsed times");
        assert!(want.iter().any(|ms| ms % 1000 == 0) && want.iter().any(|ms| ms % 1000 > 900));
    }
}

/// Every line of every file in shipping order (written without compression).
fn read_all_uncompressed(dir: &Path) -> String {
    let live = dir.join(live_name());
    let mut out = String::new();
    for f in exporter::list_shipping_order(&live).unwrap() {
        assert!(
            f.rotated.is_none_or(|r| !r.compressed),
            "{}",
            f.path.display()
        );
        out.push_str(&read(&f.path));
    }
    out
}

/// The environment the Fluent Bit DaemonSet gives the container, with sample values.
fn sample_env(name: &str) -> Option<String> {
    match name {
        "CLUSTER_NAME" => Some("prod-east".to_string()),
        "MY_NODE_NAME" => Some("ip-10-0-1-2.us-west-2.compute.internal".to_string()),
        "AWS_REGION" => Some("us-west-2".to_string()),
        _ => None,
    }
}

#[test]
fn cloudwatch_group_and_stream_are_the_names_the_agent_uses() {
    let agent = AgentConfig {
        cluster_name: sample_env("CLUSTER_NAME"),
        node_name: sample_env("MY_NODE_NAME"),
        ..AgentConfig::default()
    };
    for (name, cfg) in all_configs()
        .into_iter()
        .filter(|(n, _)| !n.starts_with("try"))
    {
        let out = cfg
            .find(SectionKind::Output, "cloudwatch_logs")
            .unwrap_or_else(|| panic!("{name}: no cloudwatch_logs output"));
        // Unexpanded: the agent's EKS pattern with the cluster left to the environment.
        assert_eq!(
            get(name, out, "log_group_name"),
            defaults::CLOUDWATCH_EKS_GROUP.replace("{cluster}", "${CLUSTER_NAME}"),
            "{name}"
        );
        let lookup = cfg.lookup(&sample_env);
        let group = out
            .get_expanded("log_group_name", &lookup)
            .unwrap()
            .unwrap();
        let stream = out
            .get_expanded("log_stream_name", &lookup)
            .unwrap()
            .unwrap();
        assert_eq!(group, agent.effective_log_group(), "{name}: group");
        assert_eq!(
            stream,
            agent.effective_log_stream("unused"),
            "{name}: stream"
        );
        config::check_log_group(&group).unwrap_or_else(|e| panic!("{name}: {e}"));
        config::check_log_stream(&stream).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            out.get("log_stream_prefix").is_none(),
            "{name}: one stream name, no prefix"
        );
        assert_eq!(get(name, out, "match"), "netpol.*", "{name}");
    }
}

fn seconds(name: &str, section: &fluent_bit_config::Section, key: &str) -> u64 {
    get(name, section, key)
        .parse()
        .unwrap_or_else(|e| panic!("{name}: {key} is not whole seconds: {e}"))
}

#[test]
fn rotate_wait_outlasts_the_agents_compression_grace() {
    for (name, cfg) in all_configs() {
        let wait = seconds(name, &tail(name, &cfg), "rotate_wait");
        assert!(
            wait > defaults::LOG_FILE_COMPRESS_GRACE.as_secs(),
            "{name}: Rotate_Wait {wait} s must exceed the compression grace {:?}",
            defaults::LOG_FILE_COMPRESS_GRACE
        );
    }
}

#[test]
fn refresh_interval_discovers_a_new_file_before_it_can_rotate() {
    for (name, cfg) in all_configs() {
        let refresh = seconds(name, &tail(name, &cfg), "refresh_interval");
        assert!(refresh >= 1, "{name}");
        assert!(
            refresh * 2 <= defaults::LOG_FILE_MIN_AGE.as_secs(),
            "{name}: Refresh_Interval {refresh} s against a minimum file age of {:?}",
            defaults::LOG_FILE_MIN_AGE
        );
    }
}

/// The agent warns at start-up when `--log-file-min-age` is below this interval: the
/// shipped configurations and the agent's threshold must move together.
#[test]
fn the_agents_min_age_warning_threshold_is_the_shipped_refresh_interval() {
    for (name, cfg) in all_configs() {
        let refresh = seconds(name, &tail(name, &cfg), "refresh_interval");
        assert_eq!(
            Duration::from_secs(refresh),
            exporter::sink::FLUENT_BIT_REFRESH_INTERVAL,
            "{name}: Refresh_Interval {refresh} s; change exporter::sink::FLUENT_BIT_REFRESH_INTERVAL with it"
        );
        let below = Duration::from_secs(refresh) - Duration::from_millis(1);
        assert!(
            exporter::sink::min_file_age_warning(below).is_some(),
            "{name}"
        );
        assert!(
            exporter::sink::min_file_age_warning(Duration::from_secs(refresh)).is_none(),
            "{name}"
        );
        assert!(exporter::sink::min_file_age_warning(defaults::LOG_FILE_MIN_AGE).is_none());
    }
}

#[test]
fn tail_keeps_offsets_and_buffers_outside_the_read_only_log_directory() {
    for (name, cfg) in all_configs() {
        let input = tail(name, &cfg);
        let db = Path::new(get(name, &input, "db"));
        let service = cfg
            .service()
            .unwrap_or_else(|| panic!("{name}: no service"));
        let storage = Path::new(get(name, service, "storage.path"));
        for p in [db, storage] {
            assert!(p.is_absolute(), "{name}: {}", p.display());
            assert!(
                !p.starts_with(log_dir()),
                "{name}: {} is in the read-only log directory",
                p.display()
            );
        }
        assert!(
            !db.starts_with(storage),
            "{name}: the DB is not inside the chunk store"
        );
        assert_eq!(get(name, &input, "storage.type"), "filesystem", "{name}");
        let skip = input
            .properties
            .iter()
            .find(|p| p.key == "skip_long_lines")
            .expect("Skip_Long_Lines");
        assert_eq!(skip.normalized_value(), "on", "{name}");
        let limit = get(name, &input, "mem_buf_limit");
        assert!(
            limit.ends_with("MB") && limit.trim_end_matches("MB").parse::<u32>().is_ok(),
            "{name}: {limit}"
        );
        let tag = get(name, &input, "tag");
        for out in cfg.of_kind(SectionKind::Output) {
            let pattern = glob::Pattern::new(get(name, out, "match")).unwrap();
            assert!(
                pattern.matches(tag),
                "{name}: output {:?} does not match tag {tag}",
                out.name()
            );
        }
    }
}

/// The sections of a configuration in comparable form, without the classic-only
/// `Parsers_File` (YAML carries its parsers inline).
fn canonical(cfg: &Config) -> Vec<(SectionKind, Vec<(String, String)>)> {
    let mut out: Vec<_> = cfg
        .sections
        .iter()
        .map(|s| {
            let mut props = s.canonical();
            props.retain(|(k, _)| k != "parsers_file");
            (s.kind, props)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn yaml_files_say_exactly_what_the_classic_files_say() {
    for (classic, yaml) in [(CLASSIC, YAML), (TRY_CLASSIC, TRY_YAML)] {
        let c = canonical(&classic_with_parsers(classic));
        let y = canonical(&yaml_config(yaml));
        assert!(c.len() >= 4, "{classic}: service, input, parser, output");
        assert_eq!(c, y, "{classic} and {yaml} differ");
    }
}

#[test]
fn stdout_variant_differs_from_the_shipping_config_only_in_its_output() {
    let ship = classic_with_parsers(CLASSIC);
    let tryout = classic_with_parsers(TRY_CLASSIC);
    let without_outputs = |cfg: &Config| {
        let mut c = canonical(cfg);
        c.retain(|(k, _)| *k != SectionKind::Output);
        c
    };
    assert_eq!(without_outputs(&ship), without_outputs(&tryout));
    let outputs = |cfg: &Config| -> Vec<String> {
        cfg.of_kind(SectionKind::Output)
            .filter_map(|s| s.name().map(str::to_string))
            .collect()
    };
    assert_eq!(outputs(&ship), ["cloudwatch_logs"]);
    assert_eq!(outputs(&tryout), ["stdout"]);
}

#[test]
fn every_variable_the_files_use_is_set_by_the_fluent_bit_daemonset() {
    let file = fb_file("daemonset.yaml");
    let docs = documents(&file);
    let ds: k8s_openapi::api::apps::v1::DaemonSet = strict(&file, &docs, "fluent-bit-netpol");
    let pod = ds.spec.template.spec.expect("pod spec");
    let env: BTreeSet<String> = pod.containers[0]
        .env
        .iter()
        .flatten()
        .map(|e| e.name.clone())
        .collect();
    for (name, cfg) in all_configs() {
        for section in &cfg.sections {
            for p in &section.properties {
                for var in vars::references(&p.value) {
                    assert!(
                        env.contains(var),
                        "{name}: ${{{var}}} in {} is not set by the DaemonSet ({env:?})",
                        p.key
                    );
                    assert!(sample_env(var).is_some(), "tests know {var}");
                }
            }
        }
    }
}

mod manifest {
    //! The Fluent Bit DaemonSet manifest (`fluent-bit/daemonset.yaml`).

    use super::*;
    use k8s_openapi::api::apps::v1::DaemonSet;
    use k8s_openapi::api::core::v1::{ConfigMap, PodSpec, ServiceAccount};

    const NAME: &str = "fluent-bit-netpol";

    fn file() -> std::path::PathBuf {
        fb_file("daemonset.yaml")
    }

    fn pod() -> PodSpec {
        let docs = documents(&file());
        let ds: DaemonSet = strict(&file(), &docs, NAME);
        ds.spec.template.spec.expect("pod spec")
    }

    #[test]
    fn manifests_are_kubernetes_objects_of_their_published_schemas() {
        let docs = documents(&file());
        let want = [
            ("v1", "ServiceAccount"),
            ("v1", "ConfigMap"),
            ("apps/v1", "DaemonSet"),
        ];
        let got = kinds(&docs);
        assert_eq!(
            got.iter()
                .map(|(a, k)| (a.as_str(), k.as_str()))
                .collect::<Vec<_>>(),
            want
        );
        let sa: ServiceAccount = strict(&file(), &docs, NAME);
        let ds: DaemonSet = strict(&file(), &docs, NAME);
        let _: ConfigMap = strict(&file(), &docs, "fluent-bit-netpol-config");
        let pod = ds.spec.template.spec.expect("pod spec");
        assert_eq!(
            pod.service_account_name.as_deref(),
            Some(sa.metadata.name.as_deref().unwrap())
        );
        assert_eq!(ds.metadata.namespace, sa.metadata.namespace);
    }

    #[test]
    fn config_map_holds_the_shipped_files_byte_for_byte() {
        let docs = documents(&file());
        let cm: ConfigMap = strict(&file(), &docs, "fluent-bit-netpol-config");
        let data = cm.data.expect("data");
        assert_eq!(
            data.keys().map(String::as_str).collect::<Vec<_>>(),
            [CLASSIC, PARSERS]
        );
        for key in [CLASSIC, PARSERS] {
            assert_eq!(
                data[key],
                read(&fb_file(key)),
                "ConfigMap {key} differs from fluent-bit/{key}"
            );
        }
        // The container reads exactly that file, and finds its Parsers_File beside it.
        let pod = pod();
        let c = &pod.containers[0];
        let command = c.command.clone().expect("command");
        let conf = command
            .windows(2)
            .find(|w| w[0] == "-c")
            .map(|w| w[1].clone())
            .expect("-c FILE");
        let (dir, key) = conf.rsplit_once('/').unwrap();
        assert_eq!(key, CLASSIC);
        let mount = c
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.mount_path == dir)
            .expect("config mount");
        let volume = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == mount.name)
            .unwrap();
        assert_eq!(
            volume.config_map.as_ref().map(|c| c.name.as_str()),
            cm.metadata.name.as_deref()
        );
        let parsers = classic_with_parsers(CLASSIC);
        assert!(data.contains_key(get(CLASSIC, parsers.service().unwrap(), "parsers_file")));
    }

    /// The host directory mounted at `path` (or above it) and whether it is read-only.
    fn mount_for(pod: &PodSpec, path: &Path) -> (String, bool) {
        let c = &pod.containers[0];
        let m = c
            .volume_mounts
            .iter()
            .flatten()
            .filter(|m| path.starts_with(&m.mount_path))
            .max_by_key(|m| m.mount_path.len())
            .unwrap_or_else(|| panic!("nothing mounted at {}", path.display()));
        let volume = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == m.name)
            .unwrap();
        let host = volume
            .host_path
            .as_ref()
            .unwrap_or_else(|| panic!("{} is not a hostPath", m.name))
            .path
            .clone();
        assert_eq!(m.mount_path, host, "{} is mounted at its host path", m.name);
        (host, m.read_only == Some(true))
    }

    #[test]
    fn log_directory_is_mounted_read_only_and_fluent_bit_state_writable() {
        let pod = pod();
        let (host, read_only) = mount_for(&pod, log_dir());
        assert_eq!(Path::new(&host), log_dir());
        assert!(
            read_only,
            "the agent's log directory must be read-only for Fluent Bit"
        );
        let cfg = classic_with_parsers(CLASSIC);
        let db = get(CLASSIC, &tail(CLASSIC, &cfg), "db").to_string();
        let storage = get(CLASSIC, cfg.service().unwrap(), "storage.path").to_string();
        for p in [db, storage] {
            let (host, read_only) = mount_for(&pod, Path::new(&p));
            assert!(!read_only, "{p} must be writable");
            assert!(!Path::new(&host).starts_with(log_dir()), "{p} on {host}");
        }
        assert_eq!(pod.host_network, None, "Fluent Bit needs no host network");
    }
}
