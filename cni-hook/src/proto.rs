//! The wire messages of the VPC CNI's `rpc.NPBackend` service, as amazon-vpc-cni-k8s
//! `rpc/rpc.proto` defines them (same package, service, method names, field names and
//! numbers), written with prost derives so no protoc is needed.

/// The service's full name (`package rpc; service NPBackend`).
pub const SERVICE_NAME: &str = "rpc.NPBackend";
/// gRPC path of `EnforceNpToPod` (the CNI calls it on ADD).
pub const ENFORCE_PATH: &str = "/rpc.NPBackend/EnforceNpToPod";
/// gRPC path of `DeletePodNp` (the CNI calls it on DEL).
pub const DELETE_PATH: &str = "/rpc.NPBackend/DeletePodNp";

/// `message EnforceNpRequest`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct EnforceNpRequest {
    /// `string K8S_POD_NAME = 1;`
    #[prost(string, tag = "1")]
    pub k8s_pod_name: String,
    /// `string K8S_POD_NAMESPACE = 2;`
    #[prost(string, tag = "2")]
    pub k8s_pod_namespace: String,
    /// `string NETWORK_POLICY_MODE = 3;` (`standard` or `strict`, any case).
    #[prost(string, tag = "3")]
    pub network_policy_mode: String,
    /// `int32 InterfaceCount = 4;` (the pod's interfaces; 1 unless multi-NIC).
    #[prost(int32, tag = "4")]
    pub interface_count: i32,
}

/// `message EnforceNpReply`.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct EnforceNpReply {
    /// `bool Success = 1;`
    #[prost(bool, tag = "1")]
    pub success: bool,
}

/// `message DeleteNpRequest`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct DeleteNpRequest {
    /// `string K8S_POD_NAME = 1;`
    #[prost(string, tag = "1")]
    pub k8s_pod_name: String,
    /// `string K8S_POD_NAMESPACE = 2;`
    #[prost(string, tag = "2")]
    pub k8s_pod_namespace: String,
}

/// `message DeleteNpReply`.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct DeleteNpReply {
    /// `bool Success = 1;`
    #[prost(bool, tag = "1")]
    pub success: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn field_numbers_match_the_cni_proto() {
        let request = EnforceNpRequest {
            k8s_pod_name: "a".into(),
            k8s_pod_namespace: "b".into(),
            network_policy_mode: "strict".into(),
            interface_count: 2,
        };
        // Hand-encoded: tag 1 (len) "a", tag 2 (len) "b", tag 3 (len) "strict", tag 4 varint 2.
        let expected = [
            0x0a, 1, b'a', 0x12, 1, b'b', 0x1a, 6, b's', b't', b'r', b'i', b'c', b't', 0x20, 2,
        ];
        assert_eq!(request.encode_to_vec(), expected);
        assert_eq!(EnforceNpReply { success: true }.encode_to_vec(), [0x08, 1]);
        let delete = DeleteNpRequest {
            k8s_pod_name: "a".into(),
            k8s_pod_namespace: "b".into(),
        };
        assert_eq!(delete.encode_to_vec(), [0x0a, 1, b'a', 0x12, 1, b'b']);
    }
}
