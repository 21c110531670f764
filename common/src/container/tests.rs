use serde_json::json;

use super::*;

fn spec(v: serde_json::Value) -> Result<ContainerSpec, String> {
    serde_json::from_value(v).map_err(|e| e.to_string())
}

#[test]
fn the_empty_spec_is_the_default_and_stays_off_the_wire() {
    let s = spec(json!({})).unwrap();
    assert!(s.is_default());
    assert_eq!(serde_json::to_value(&s).unwrap(), json!({}));
    assert_eq!(
        s.log.effective_options(),
        BTreeMap::from([
            ("max-file".to_string(), "3".to_string()),
            ("max-size".to_string(), "10m".to_string())
        ])
    );
}

#[test]
fn a_full_spec_round_trips() {
    let v = json!({
        "command": ["serve", "--port", "8080"], "entrypoint": ["/app"],
        "working_dir": "/srv", "user": "1000:1000",
        "volumes": ["data:/var/lib/data", "/etc/ssl:/etc/ssl:ro"],
        "tmpfs": ["/tmp:size=64m,mode=1777"], "privileged": true, "network_mode": "host",
        "cap_add": ["NET_ADMIN"],
        "resources": {"memory": "256m", "memory_reservation": "128m", "cpus": 0.5, "pids_limit": 100},
        "restart": "on-failure:5",
        "labels": {"com.example.team": "web"}, "stop_signal": "SIGQUIT", "stop_grace": "20s",
        "log": {"driver": "json-file", "options": {"max-size": "1m"}}
    });
    let s = spec(v.clone()).unwrap();
    assert_eq!(serde_json::to_value(&s).unwrap(), v);
    assert_eq!(s.resources.memory.as_ref().unwrap().bytes(), 256 << 20);
    assert_eq!(s.resources.cpus.unwrap().millis(), 500);
    assert_eq!(s.restart.as_ref().unwrap().split(), ("on-failure", Some(5)));
    assert_eq!(s.log.effective_options()["max-size"], "1m");
    assert_eq!(s.log.effective_options()["max-file"], "3");
    assert!(s.problems().is_empty(), "{:?}", s.problems());
}

#[test]
fn each_bad_value_is_refused_by_its_parser() {
    for (field, value) in [
        ("working_dir", json!("srv")),
        ("working_dir", json!("/a:b")),
        ("user", json!("a:b:c")),
        ("user", json!("-root")),
        ("volumes", json!(["data"])),
        ("volumes", json!(["data:rel"])),
        ("volumes", json!(["data:/x:rx"])),
        ("volumes", json!(["-bad:/x"])),
        ("tmpfs", json!(["tmp"])),
        ("tmpfs", json!(["/tmp:size 1"])),
        ("cap_add", json!(["net_admin"])),
        ("network_mode", json!("container:abc")),
        ("resources", json!({"memory": "1x"})),
        ("resources", json!({"memory": "-1"})),
        ("resources", json!({"cpus": 0})),
        ("resources", json!({"cpus": 0.0001})),
        ("resources", json!({"cpus": "1"})),
        ("resources", json!({"swap": "1g"})),
        ("restart", json!("sometimes")),
        ("restart", json!("on-failure:0")),
        ("networks", json!([{"name": "host"}])),
        ("networks", json!([{"name": "db", "aliases": ["Web"]}])),
        ("labels", json!({"sluice.service": "x"})),
        ("labels", json!({"Sluice.x": "x"})),
        ("labels", json!({"a b": "x"})),
        ("stop_signal", json!("TERM")),
        ("stop_signal", json!("65")),
        ("stop_grace", json!("10")),
        ("log", json!({"driver": "json file"})),
        ("log", json!({"opts": {}})),
        ("shell", json!(true)),
    ] {
        let r = spec(json!({ field: value }));
        assert!(r.is_err(), "{field} = {value} was accepted");
    }
    let e = spec(json!({"labels": {"sluice.token": "1"}})).unwrap_err();
    assert!(e.contains("reserved"), "{e}");
}

#[test]
fn good_values_parse() {
    for v in ["SIGTERM", "SIGRTMIN+3", "15", "SIGUSR1"] {
        StopSignal::parse(v).unwrap();
    }
    for v in [
        "no",
        "always",
        "unless-stopped",
        "on-failure",
        "on-failure:999",
    ] {
        RestartPolicy::parse(v).unwrap();
    }
    for (v, b) in [
        ("0", 0),
        ("10", 10),
        ("2k", 2048),
        ("1G", 1 << 30),
        ("7b", 7),
    ] {
        assert_eq!(ByteSize::parse(v).unwrap().bytes(), b);
    }
    assert!(ByteSize::parse("99999999999999g").is_err());
    assert!(VolumeMount::parse("/srv/data:/data:rw")
        .unwrap()
        .is_host_path());
    assert!(!VolumeMount::parse("pg-data:/data").unwrap().is_host_path());
    assert_eq!(TmpfsMount::parse("/run").unwrap().split(), ("/run", ""));
    assert_eq!(Cpus::from_f64(2.0).unwrap().millis(), 2000);
}

#[test]
fn cross_field_rules_name_their_fields() {
    let s = spec(json!({
        "command": ["a\u{0}"],
        "resources": {"memory": "4m", "memory_reservation": "8m", "pids_limit": 0},
        "network_mode": "host", "networks": [{"name": "db"}, {"name": "db"}],
        "volumes": ["a:/data"], "tmpfs": ["/data"],
        "labels": {"x": "a\nb"}, "log": {"options": {"tag": ""}}, "stop_grace": "2h"
    }))
    .unwrap();
    let fields: Vec<String> = s.problems().into_iter().map(|(f, _)| f).collect();
    assert_eq!(
        fields,
        [
            "spec.command.0",
            "spec.resources.memory",
            "spec.resources.memory_reservation",
            "spec.resources.pids_limit",
            "spec.networks",
            "spec.networks.1.name",
            "spec.tmpfs.0",
            "spec.labels.x",
            "spec.log.options.tag",
            "spec.stop_grace",
        ]
    );
}

#[test]
fn the_policy_forbids_what_it_does_not_allow_and_names_every_field() {
    let s = spec(json!({
        "privileged": true, "network_mode": "host", "cap_add": ["NET_ADMIN"],
        "volumes": ["data:/data", "/etc:/host-etc:ro"]
    }))
    .unwrap();
    let v = ContainerPolicy::default().violations(&s);
    let fields: Vec<&str> = v.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        fields,
        [
            "spec.privileged",
            "spec.network_mode",
            "spec.cap_add",
            "spec.volumes.1"
        ]
    );
    assert!(v[0].1.contains("allow_privileged"));
    let all = ContainerPolicy {
        allow_privileged: true,
        allow_host_network: true,
        allow_host_pid: true,
        allow_cap_add: true,
        allow_host_mounts: true,
    };
    assert!(all.violations(&s).is_empty());
    let named_only = spec(json!({"volumes": ["data:/data"]})).unwrap();
    assert!(ContainerPolicy::default()
        .violations(&named_only)
        .is_empty());
}
