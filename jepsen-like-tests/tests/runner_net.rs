//! The iptables and tc command lines: only our chain, only 127.0.1.x.

use jepsen_like_tests::runner::net::{
    drop_rule_args, htb_class_args, htb_root_args, jump_args, links_of, loss_rule_args,
    netem_delay_args, netem_filter_args, node_ip, qdisc_root_args, CHAIN,
};

fn line(v: Vec<String>) -> String {
    v.join(" ")
}

#[test]
fn nodes_live_on_their_own_loopback_addresses() {
    assert_eq!(node_ip(1).to_string(), "127.0.1.1");
    assert_eq!(node_ip(5).to_string(), "127.0.1.5");
}

#[test]
#[should_panic]
fn node_zero_is_refused() {
    node_ip(0);
}

#[test]
fn a_cut_is_one_drop_rule_in_our_chain() {
    assert_eq!(CHAIN, "REGISTRY-CHAOS");
    assert_eq!(
        line(drop_rule_args(2, 3)),
        "-w -A REGISTRY-CHAOS -s 127.0.1.2 -d 127.0.1.3 -j DROP"
    );
}

#[test]
fn only_node_traffic_jumps_to_our_chain() {
    assert_eq!(
        line(jump_args("-I")),
        "-w -I OUTPUT -s 127.0.1.0/24 -d 127.0.1.0/24 -j REGISTRY-CHAOS"
    );
    assert_eq!(
        line(jump_args("-D")),
        "-w -D OUTPUT -s 127.0.1.0/24 -d 127.0.1.0/24 -j REGISTRY-CHAOS"
    );
}

#[test]
fn netem_hangs_from_a_fourth_band_only_filters_reach() {
    let root = line(qdisc_root_args());
    assert!(root.starts_with("qdisc add dev lo root handle 7c5: prio bands 4 priomap "));
    // The priomap never names band 4 (index 3).
    let map: Vec<&str> = root.split("priomap ").nth(1).unwrap().split(' ').collect();
    assert_eq!(map.len(), 16);
    assert!(map.iter().all(|b| *b != "3"));
    assert_eq!(
        line(netem_delay_args(100, 50)),
        "qdisc add dev lo parent 7c5:4 handle 7c6: netem delay 100ms 50ms"
    );
    assert_eq!(
        line(htb_root_args()),
        "qdisc add dev lo root handle 7c5: htb"
    );
    assert_eq!(
        line(htb_class_args(256)),
        "class add dev lo parent 7c5: classid 7c5:4 htb rate 256kbit ceil 256kbit"
    );
    assert_eq!(
        line(netem_filter_args(1, 3)),
        "filter add dev lo parent 7c5: protocol ip prio 1 u32 match ip src 127.0.1.1/32 match ip dst 127.0.1.3/32 flowid 7c5:4"
    );
}

#[test]
fn links_of_a_node_are_both_directions_to_every_peer() {
    assert_eq!(links_of(&[2], 3), vec![(1, 2), (2, 1), (2, 3), (3, 2)]);
    assert_eq!(links_of(&[1, 2], 3).len(), 6);
}

#[test]
fn loss_is_a_random_drop_in_our_chain() {
    assert_eq!(
        line(loss_rule_args(1, 3, 30)),
        "-w -A REGISTRY-CHAOS -s 127.0.1.1 -d 127.0.1.3 -m statistic --mode random --probability 0.30 -j DROP"
    );
    assert!(line(loss_rule_args(1, 3, 250)).contains("--probability 1.00"));
}
