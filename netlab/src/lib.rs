//! Network plumbing for the lab and the tests: network namespaces entered per thread,
//! veth pairs and VPC-CNI-style pod wiring (pod `eth0` with a /32 and /128, a default
//! route through a link-local gateway, host-side veth in a node namespace). Every
//! object sits behind a guard that removes it on drop; nothing touches the root
//! namespace beyond creating and deleting namespaces.

mod cmd;
mod netns;
mod pod;

pub use cmd::{NetlabError, ip, run};
pub use netns::{NetNs, NsEntered, enter_by_name, unique_name};
pub use pod::{
    GATEWAY_V4, GATEWAY_V6, PodLink, PodSpec, assign_addresses, create_link, prepare_node, wire_pod,
};
