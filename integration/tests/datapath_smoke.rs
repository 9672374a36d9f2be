//! The programs load, pass the verifier, and judge a first packet.
use datapath_common::*;
use integration::{frames::Frame, kernel::*};

#[test]
fn default_allow_pod_accepts_and_reports() {
    let mut fx = KernelFixture::new(&["pa"]);
    let pa = fx.ifindex("pa");
    let pod = "10.1.0.2".parse().unwrap();
    fx.set_pod(pa, &[pod], STATE_DEFAULT_ALLOW, STATE_DEFAULT_ALLOW);
    let frame = Frame::tcp("10.9.0.1".parse().unwrap(), 40000, pod, 80, 0x02).build();
    assert_eq!(fx.run(DIRECTION_INGRESS, pa, &frame), ACT_PASS);
    let events = fx.events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].verdict, VERDICT_ACCEPT);
    assert_eq!(events[0].reason, REASON_DEFAULT_ALLOW);
}
