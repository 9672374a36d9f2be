//! The hook over a real unix socket with a recording hook: calls arrive checked, each
//! outcome maps to its status code, and the socket file is prepared and removed.

use std::{
    os::unix::fs::{FileTypeExt, PermissionsExt},
    path::Path,
    sync::{Arc, Mutex},
};

use cni_hook::{
    EnforceRequest, HookClient, HookError, HookMetrics, HookServer, PodHook, PodKey, ServeError,
    proto::{DeleteNpRequest, EnforceNpRequest},
};
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<String>>,
}

impl PodHook for Recorder {
    fn enforce(&self, request: &EnforceRequest) -> Result<(), HookError> {
        if request.pod.name == "no-veth" {
            return Err(HookError::NoInterface {
                pod: request.pod.clone(),
                expected: "eni0123456789a".into(),
            });
        }
        self.calls.lock().unwrap().push(format!(
            "enforce {} {:?} {}",
            request.pod, request.mode, request.interface_count
        ));
        Ok(())
    }

    fn delete(&self, pod: &PodKey) -> Result<(), HookError> {
        self.calls.lock().unwrap().push(format!("delete {pod}"));
        Ok(())
    }
}

struct Running {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), ServeError>>,
}

fn start(path: &Path, hook: Arc<Recorder>, metrics: HookMetrics) -> Running {
    let server = HookServer::bind(path).expect("bind");
    let stop = CancellationToken::new();
    let task = tokio::spawn(server.serve(hook, metrics, stop.clone()));
    Running { stop, task }
}

fn enforce(namespace: &str, name: &str, mode: &str) -> EnforceNpRequest {
    EnforceNpRequest {
        k8s_pod_name: name.into(),
        k8s_pod_namespace: namespace.into(),
        network_policy_mode: mode.into(),
        interface_count: 1,
    }
}

#[tokio::test]
async fn calls_arrive_checked_and_errors_map_to_status_codes() {
    let dir = tempfile::tempdir().unwrap();
    // The directory is created as the CNI's /var/run/aws-node would be.
    let path = dir.path().join("aws-node/npa.sock");
    let hook = Arc::new(Recorder::default());
    let metrics = HookMetrics::default();
    let running = start(&path, Arc::clone(&hook), metrics.clone());
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    let mut client = HookClient::connect(&path).await.expect("connect");
    let reply = client
        .enforce_np_to_pod(enforce("default", "web-1", "STRICT"))
        .await
        .expect("enforce");
    assert!(reply.success);
    let reply = client
        .delete_pod_np(DeleteNpRequest {
            k8s_pod_name: "web-1".into(),
            k8s_pod_namespace: "default".into(),
        })
        .await
        .expect("delete");
    assert!(reply.success);

    // Malformed requests never reach the hook.
    for (request, field) in [
        (enforce("", "web-1", "strict"), "K8S_POD_NAMESPACE"),
        (enforce("default", "", "strict"), "K8S_POD_NAME"),
        (enforce("default", "Web_1", "strict"), "K8S_POD_NAME"),
        (
            enforce("default", "web-1", "sometimes"),
            "NETWORK_POLICY_MODE",
        ),
    ] {
        let status = client.enforce_np_to_pod(request).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(status.message().starts_with(field), "{status:?}");
    }
    let status = client
        .delete_pod_np(DeleteNpRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);

    // A hook error reaches the CNI as its status.
    let status = client
        .enforce_np_to_pod(enforce("default", "no-veth", "standard"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert!(status.message().contains("eni0123456789a"), "{status:?}");

    assert_eq!(
        *hook.calls.lock().unwrap(),
        ["enforce default/web-1 Strict 1", "delete default/web-1"]
    );
    assert_eq!(metrics.calls("EnforceNpToPod", "ok"), 1);
    assert_eq!(metrics.calls("EnforceNpToPod", "invalid_argument"), 4);
    assert_eq!(metrics.calls("EnforceNpToPod", "no_interface"), 1);
    assert_eq!(metrics.calls("DeletePodNp", "ok"), 1);
    assert_eq!(metrics.calls("DeletePodNp", "invalid_argument"), 1);

    // The server still answers after all that.
    assert!(
        client
            .enforce_np_to_pod(enforce("kube-system", "b", "standard"))
            .await
            .unwrap()
            .success
    );
    assert_eq!(
        hook.calls.lock().unwrap().last().unwrap(),
        "enforce kube-system/b Standard 1"
    );

    running.stop.cancel();
    running.task.await.unwrap().expect("clean shutdown");
    assert!(!path.exists(), "socket removed on shutdown");
}

#[tokio::test]
async fn a_stale_socket_is_replaced_and_other_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("npa.sock");
    // A socket left by a process that died.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let running = start(&path, Arc::new(Recorder::default()), HookMetrics::default());
    let mut client = HookClient::connect(&path).await.expect("connect");
    assert!(
        client
            .enforce_np_to_pod(enforce("default", "a", "standard"))
            .await
            .unwrap()
            .success
    );
    running.stop.cancel();
    running.task.await.unwrap().unwrap();

    let file = dir.path().join("not-a-socket");
    std::fs::write(&file, b"keep me").unwrap();
    match HookServer::bind(&file) {
        Err(ServeError::Refused { path, reason }) => {
            assert_eq!(path, file);
            assert!(reason.contains("not a socket"), "{reason}");
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("bound over a regular file"),
    }
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
}

#[tokio::test]
async fn nothing_listening_fails_the_dial() {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        HookClient::connect(dir.path().join("npa.sock"))
            .await
            .is_err()
    );
}
