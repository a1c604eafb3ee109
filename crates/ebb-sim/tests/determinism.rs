//! One seed, one run: identical reports for the same seed, different ones
//! for different seeds, across every policy the simulator can parse.
#![allow(clippy::unwrap_used)]

use ebb_sim::{SimConfig, run_spec};

/// The report as JSON without the two wall-clock fields.
fn json(policy: &str, seed: u64) -> String {
    let mut cfg = SimConfig::new(20, 0.9, 10_000, seed);
    cfg.gateways = 3;
    cfg.deadline_secs = Some(20.0);
    cfg.service = "lognormal:1,1.5".parse().unwrap();
    cfg.speeds = "1,2,0.5".parse().unwrap();
    let r = run_spec(cfg, policy, &mut |_| {}).unwrap();
    let mut v = serde_json::to_value(&r).unwrap();
    let obj = v.as_object_mut().unwrap();
    obj.remove("events_per_sec");
    obj.remove("wall_secs");
    v.to_string()
}

#[test]
fn same_seed_same_json_different_seed_different_json() {
    for policy in ebb_policy::balance::POLICY_NAMES {
        let policy = policy.replace('D', "3");
        let a = json(&policy, 7);
        assert_eq!(a, json(&policy, 7), "policy {policy}, seed 7");
        assert_ne!(a, json(&policy, 8), "policy {policy}, seeds 7 and 8");
    }
}
