//! The fault schedule is a pure function of its seed, and partitions cut
//! exactly the links their shape says.

use std::time::Duration;

use jepsen_like_tests::runner::schedule::{cut_links, minority_size, schedule, Fault, Nemesis};

#[test]
fn same_seed_same_schedule() {
    let nemeses = Nemesis::ALL.to_vec();
    let a = schedule(&nemeses, 5, Duration::from_secs(120), 42);
    let b = schedule(&nemeses, 5, Duration::from_secs(120), 42);
    assert_eq!(a, b);
    let c = schedule(&nemeses, 5, Duration::from_secs(120), 43);
    assert_ne!(a, c, "another seed should draw another schedule");
}

#[test]
fn schedule_fits_the_duration_and_has_a_step() {
    for seed in 0..50 {
        let d = Duration::from_secs(15);
        let steps = schedule(&[Nemesis::Kill, Nemesis::Delay], 3, d, seed);
        assert!(!steps.is_empty());
        let total: Duration = steps.iter().map(|s| s.quiet + s.hold).sum();
        assert!(
            steps.len() == 1 || total <= d,
            "seed {seed}: {total:?} > {d:?}"
        );
        for s in &steps {
            assert!([Nemesis::Kill, Nemesis::Delay].contains(&s.nemesis));
        }
    }
    // Even a duration shorter than one step runs one step.
    assert_eq!(schedule(&[Nemesis::KillAll], 3, Duration::ZERO, 1).len(), 1);
}

#[test]
fn kills_and_splits_take_a_minority() {
    assert_eq!(minority_size(3), 1);
    assert_eq!(minority_size(5), 2);
    for seed in 0..30 {
        for s in schedule(
            &[Nemesis::KillMinority, Nemesis::PartitionMajority],
            5,
            Duration::from_secs(30),
            seed,
        ) {
            match s.fault {
                Fault::Kill { nodes } => assert_eq!(nodes.len(), 2),
                Fault::PartitionSplit { minority } => assert_eq!(minority.len(), 2),
                other => panic!("unexpected fault {other:?}"),
            }
        }
    }
}

#[test]
fn names_round_trip() {
    for n in Nemesis::ALL {
        assert_eq!(Nemesis::parse(n.name()), Some(n));
    }
    assert_eq!(Nemesis::parse("nope"), None);
}

#[test]
fn isolating_the_leader_cuts_both_directions_of_its_links_only() {
    let cut = cut_links(&Fault::PartitionLeader, 3, Some(2));
    assert_eq!(cut, vec![(1, 2), (2, 1), (2, 3), (3, 2)]);
    assert!(cut_links(&Fault::PartitionLeader, 3, None).is_empty());
}

#[test]
fn a_ring_of_five_keeps_each_node_with_its_two_neighbours() {
    let ring = vec![1, 3, 5, 2, 4];
    let cut = cut_links(&Fault::PartitionRing { ring: ring.clone() }, 5, None);
    // 5 nodes, each cut from 2 non-neighbours, both directions: 10 links.
    assert_eq!(cut.len(), 10);
    for (i, &a) in ring.iter().enumerate() {
        let next = ring[(i + 1) % 5];
        let prev = ring[(i + 4) % 5];
        assert!(!cut.contains(&(a, next)) && !cut.contains(&(a, prev)));
    }
    // A ring of three is a full mesh: nothing to cut.
    assert!(cut_links(
        &Fault::PartitionRing {
            ring: vec![2, 1, 3]
        },
        3,
        None
    )
    .is_empty());
}

#[test]
fn a_one_way_cut_is_one_direction() {
    assert_eq!(
        cut_links(&Fault::PartitionOneway { from: 3, to: 1 }, 3, None),
        vec![(3, 1)]
    );
}

#[test]
fn a_split_cuts_every_link_across() {
    let cut = cut_links(
        &Fault::PartitionSplit {
            minority: vec![1, 4],
        },
        5,
        None,
    );
    assert_eq!(cut.len(), 2 * 2 * 3);
    assert!(cut.contains(&(1, 2)) && cut.contains(&(2, 1)));
    assert!(!cut.contains(&(1, 4)) && !cut.contains(&(2, 3)));
}
