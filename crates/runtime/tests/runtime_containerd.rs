//! containerd for real, from a tempdir data dir: start, adopt, import the offline images, run a
//! pod (pause sandbox with CNI networking + busybox httpd) through the CRI, and killall.

mod support;

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use k8rs_runtime::api::image_service_client::ImageServiceClient;
use k8rs_runtime::api::runtime_service_client::RuntimeServiceClient;
use k8rs_runtime::api::{self as cri};
use k8rs_runtime::{CniNetwork, ContainerdConfig, ensure_containerd, import_images, killall};
use support::Agent;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn ensure_adopts_the_running_containerd_and_imports_once() {
    if !support::can_run_containerd() {
        return;
    }
    let agent = Agent::new();
    let images = agent.stage_images();
    let cfg = ContainerdConfig::new(agent.path());
    let first = ensure_containerd(&cfg).await.expect("start containerd");
    assert!(!first.reused);
    assert_eq!(first.runtime_name, "containerd");
    let pid = first.pid.expect("pid of the started containerd");
    assert_eq!(
        process_group(pid),
        pid,
        "containerd runs in its own process group"
    );
    assert!(cfg.paths().log.is_file());

    let report = import_images(&first, &images).await.expect("import");
    assert_eq!(report.imported.len(), 2, "{report:?}");
    let names: Vec<&String> = report.imported.iter().flat_map(|(_, n)| n).collect();
    assert!(
        names.iter().any(|n| *n == "localhost/k8rs/pause:3.10"),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| *n == "localhost/k8rs/busybox:1.35"),
        "{names:?}"
    );

    let second = ensure_containerd(&cfg).await.expect("adopt containerd");
    assert!(second.reused);
    assert_eq!(second.pid, Some(pid));
    let again = import_images(&second, &images).await.expect("import again");
    assert!(again.imported.is_empty(), "{again:?}");
    assert_eq!(again.skipped.len(), 2);

    // The CRI sees both images.
    let list = ImageServiceClient::new(second.channel().await.expect("channel"))
        .list_images(cri::ListImagesRequest { filter: None })
        .await
        .expect("ListImages")
        .into_inner();
    let tags: Vec<String> = list.images.into_iter().flat_map(|i| i.repo_tags).collect();
    assert!(
        tags.contains(&"localhost/k8rs/busybox:1.35".to_string()),
        "{tags:?}"
    );

    // A changed config restarts containerd (running pods would survive: their shims stay).
    let mut changed = cfg.clone();
    changed.log_level = "debug".into();
    let restarted = ensure_containerd(&changed)
        .await
        .expect("restart on config change");
    assert!(!restarted.reused);
    let pid2 = restarted.pid.expect("new pid");
    assert_ne!(pid2, pid);
    assert!(!support::alive(pid), "old containerd still running");

    let report = killall(agent.path()).await.expect("killall");
    assert!(report.processes_killed.contains(&pid2), "{report:?}");
    assert!(report.problems.is_empty(), "{report:?}");
    assert!(!support::alive(pid2), "containerd still running");
    assert!(!cfg.paths().socket.exists());

    // Started again after killall: a new containerd, the images still there.
    let third = ensure_containerd(&changed).await.expect("restart");
    assert!(!third.reused);
    let again = import_images(&third, &images)
        .await
        .expect("import after restart");
    assert_eq!(again.skipped.len(), 2, "{again:?}");
}

#[tokio::test]
async fn pod_runs_through_the_cri_and_killall_leaves_nothing() {
    if !support::can_run_containerd() {
        return;
    }
    k8rs_testing::netguard::ensure().expect("network safety guard");
    let agent = Agent::new();
    let images = agent.stage_images();
    let cfg = ContainerdConfig::new(agent.path());
    let containerd = ensure_containerd(&cfg).await.expect("start containerd");
    import_images(&containerd, &images).await.expect("import");
    let (bridge, subnet) = support::test_network(0);
    let mut net = CniNetwork::new(agent.path(), subnet.clone());
    net.bridge = bridge.clone();
    assert!(k8rs_runtime::write_cni_config(&cfg.cni_conf_dir, &net).expect("cni config"));

    let mut rt = RuntimeServiceClient::new(containerd.channel().await.expect("channel"));
    wait_network_ready(&mut rt).await;

    let log_dir = agent.path().join("pods/web");
    std::fs::create_dir_all(&log_dir).expect("log dir");
    // hostPorts are not the runtime's: the node's proxy programs them (k8rs-proxy tests).
    let web_config = sandbox_config("web", &log_dir);
    let sandbox = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(web_config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .expect("RunPodSandbox")
        .into_inner()
        .pod_sandbox_id;
    let status = rt
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: sandbox.clone(),
            verbose: true,
        })
        .await
        .expect("PodSandboxStatus")
        .into_inner();
    let s = status.status.as_ref().expect("status");
    assert_eq!(s.state, cri::PodSandboxState::SandboxReady as i32);
    let ip = s.network.as_ref().map(|n| n.ip.clone()).unwrap_or_default();
    let prefix = subnet.trim_end_matches("0/24");
    assert!(ip.starts_with(prefix), "pod IP {ip:?} not in {subnet}");
    let pause_pid = sandbox_pid(&status.info);

    // The busybox image's default command: httpd on 8080, reachable from the host.
    let web = create_and_start(&mut rt, &sandbox, &web_config, "web", vec![]).await;
    assert_running(&mut rt, &web).await;
    let page = support::eventually("the pod's HTTP server", WAIT, || http_get(&ip, 8080)).await;
    assert!(page.contains("Hello from k8rs"), "{page}");

    // A container in the pod's PID namespace leaves an orphan: pause adopts and reaps it.
    let orphans = vec![
        "sh".into(),
        "-c".into(),
        "(sleep 1 &); exec sleep 3600".into(),
    ];
    let maker = create_and_start(&mut rt, &sandbox, &web_config, "orphans", orphans).await;
    assert_running(&mut rt, &maker).await;
    let children = |pid: u32| -> Vec<(u32, char, String)> {
        support::processes()
            .into_iter()
            .filter(|p| p.1 == pid)
            .map(|p| (p.0, p.2, p.3))
            .collect()
    };
    support::eventually("the orphan re-parented to pause", WAIT, || {
        let c = children(pause_pid);
        async move { c.iter().any(|p| p.2 == "sleep").then_some(()) }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        children(pause_pid).is_empty(),
        "left: {:?}",
        children(pause_pid)
    );

    // Container lifecycle through the CRI.
    for id in [&web, &maker] {
        rt.stop_container(cri::StopContainerRequest {
            container_id: id.clone(),
            timeout: 2,
        })
        .await
        .expect("StopContainer");
        let st = container_state(&mut rt, id).await;
        assert_eq!(st, cri::ContainerState::ContainerExited as i32);
        rt.remove_container(cri::RemoveContainerRequest {
            container_id: id.clone(),
        })
        .await
        .expect("RemoveContainer");
    }
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: sandbox.clone(),
    })
    .await
    .expect("StopPodSandbox");
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: sandbox,
    })
    .await
    .expect("RemovePodSandbox");

    // A second pod left running: killall tears it down.
    let other_logs = agent.path().join("pods/left");
    std::fs::create_dir_all(&other_logs).expect("log dir");
    let other_config = sandbox_config("left", &other_logs);
    let other = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(other_config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .expect("RunPodSandbox")
        .into_inner()
        .pod_sandbox_id;
    let sleeper = vec!["sleep".into(), "3600".into()];
    create_and_start(&mut rt, &other, &other_config, "sleeper", sleeper).await;
    drop(rt);

    let report = killall(agent.path()).await.expect("killall");
    assert_eq!(report.sandboxes_removed, 1, "{report:?}");
    assert!(report.problems.is_empty(), "{report:?}");
    assert_eq!(report.bridge_removed.as_ref(), Some(&bridge));
    let socket = cfg.paths().socket.display().to_string();
    let left = support::processes_mentioning(&socket);
    assert!(left.is_empty(), "processes left: {left:?}");
    let config = cfg.paths().config.display().to_string();
    assert!(support::processes_mentioning(&config).is_empty());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let agent_dir = agent.path().display().to_string();
    assert!(
        !mounts.contains(&agent_dir),
        "mounts left under {agent_dir}"
    );
    assert!(
        !Path::new("/sys/class/net").join(&bridge).exists(),
        "bridge left"
    );
}

/// As with k3s, pods outlive containerd: after containerd dies, `ensure_containerd` starts a new
/// one that finds the pod still running.
#[tokio::test]
async fn pods_survive_a_containerd_restart() {
    if !support::can_run_containerd() {
        return;
    }
    k8rs_testing::netguard::ensure().expect("network safety guard");
    let agent = Agent::new();
    let images = agent.stage_images();
    let cfg = ContainerdConfig::new(agent.path());
    let first = ensure_containerd(&cfg).await.expect("start containerd");
    import_images(&first, &images).await.expect("import");
    let (bridge, subnet) = support::test_network(1);
    let mut net = CniNetwork::new(agent.path(), subnet);
    net.bridge = bridge.clone();
    k8rs_runtime::write_cni_config(&cfg.cni_conf_dir, &net).expect("cni config");
    let mut rt = RuntimeServiceClient::new(first.channel().await.expect("channel"));
    wait_network_ready(&mut rt).await;
    let logs = agent.path().join("pods/survivor");
    std::fs::create_dir_all(&logs).expect("log dir");
    let sandbox = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(sandbox_config("survivor", &logs)),
            runtime_handler: String::new(),
        })
        .await
        .expect("RunPodSandbox")
        .into_inner()
        .pod_sandbox_id;
    drop(rt);

    let old = first.pid.expect("pid");
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &old.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    support::eventually("containerd to die", WAIT, || async move {
        (!support::alive(old)).then_some(())
    })
    .await;

    let second = ensure_containerd(&cfg).await.expect("start again");
    assert!(!second.reused);
    let mut rt = RuntimeServiceClient::new(second.channel().await.expect("channel"));
    let status = rt
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: sandbox,
            verbose: true,
        })
        .await
        .expect("PodSandboxStatus")
        .into_inner();
    let state = status.status.as_ref().map(|s| s.state);
    assert_eq!(state, Some(cri::PodSandboxState::SandboxReady as i32));
    let pause = sandbox_pid(&status.info);
    let netns = std::fs::metadata(format!("/proc/{pause}/ns/net"))
        .expect("pod netns")
        .ino();
    drop(rt);

    // With containerd dead, killall still kills the pod by pid, releases its netns and removes
    // its cgroups.
    let cgroups = runc_cgroups(&cfg.paths().state.join("runc"));
    assert!(!cgroups.is_empty(), "no runc state found");
    let pid2 = second.pid.expect("pid");
    std::process::Command::new("kill")
        .args(["-KILL", &pid2.to_string()])
        .status()
        .expect("kill");
    let report = killall(agent.path()).await.expect("killall");
    assert_eq!(report.sandboxes_removed, 0, "{report:?}");
    assert!(report.processes_killed.contains(&pause), "{report:?}");
    assert!(!support::alive(pause), "pause still running");
    let pinned: Vec<_> = std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| std::fs::metadata(e.path()).is_ok_and(|m| m.ino() == netns))
        .map(|e| e.path())
        .collect();
    assert!(pinned.is_empty(), "netns left: {pinned:?}");
    let socket = cfg.paths().socket.display().to_string();
    assert!(support::processes_mentioning(&socket).is_empty());
    assert_eq!(report.bridge_removed.as_ref(), Some(&bridge));
    let left: Vec<_> = cgroups.iter().filter(|c| c.exists()).collect();
    assert!(left.is_empty(), "cgroups left: {left:?}");
}

/// Every cgroup directory in the runc states under `runc_root`.
fn runc_cgroups(runc_root: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for ns in std::fs::read_dir(runc_root).into_iter().flatten().flatten() {
        for c in std::fs::read_dir(ns.path()).into_iter().flatten().flatten() {
            let Ok(state) = std::fs::read(c.path().join("state.json")) else {
                continue;
            };
            let v: serde_json::Value = serde_json::from_slice(&state).expect("state.json");
            for p in v["cgroup_paths"].as_object().into_iter().flatten() {
                out.push(std::path::PathBuf::from(p.1.as_str().expect("path")));
            }
        }
    }
    out
}

/// The process group of `pid`.
fn process_group(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let rest = &stat[stat.rfind(')').expect("comm") + 1..];
    rest.split_whitespace()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .expect("pgrp")
}

async fn wait_network_ready(rt: &mut RuntimeServiceClient<Channel>) {
    support::eventually("the CRI's network to be ready", WAIT, || {
        let mut rt = rt.clone();
        async move {
            let status = rt
                .status(cri::StatusRequest { verbose: false })
                .await
                .ok()?
                .into_inner();
            let conditions = status.status?.conditions;
            conditions
                .iter()
                .any(|c| c.r#type == "NetworkReady" && c.status)
                .then_some(())
        }
    })
    .await;
}

fn sandbox_config(name: &str, log_dir: &Path) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}-{}", std::process::id()),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: log_dir.display().to_string(),
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    network: cri::NamespaceMode::Pod as i32,
                    pid: cri::NamespaceMode::Pod as i32,
                    ipc: cri::NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Creates and starts a busybox container (its default command when `command` is empty) in the
/// pod's PID namespace.
async fn create_and_start(
    rt: &mut RuntimeServiceClient<Channel>,
    sandbox: &str,
    sandbox_config: &cri::PodSandboxConfig,
    name: &str,
    command: Vec<String>,
) -> String {
    let config = cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: "localhost/k8rs/busybox:1.35".into(),
            ..Default::default()
        }),
        command,
        log_path: format!("{name}/0.log"),
        linux: Some(cri::LinuxContainerConfig {
            security_context: Some(cri::LinuxContainerSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    network: cri::NamespaceMode::Pod as i32,
                    pid: cri::NamespaceMode::Pod as i32,
                    ipc: cri::NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let id = rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sandbox.into(),
            config: Some(config),
            sandbox_config: Some(sandbox_config.clone()),
        })
        .await
        .expect("CreateContainer")
        .into_inner()
        .container_id;
    rt.start_container(cri::StartContainerRequest {
        container_id: id.clone(),
    })
    .await
    .expect("StartContainer");
    id
}

async fn container_state(rt: &mut RuntimeServiceClient<Channel>, id: &str) -> i32 {
    rt.container_status(cri::ContainerStatusRequest {
        container_id: id.into(),
        verbose: false,
    })
    .await
    .expect("ContainerStatus")
    .into_inner()
    .status
    .map(|s| s.state)
    .unwrap_or(-1)
}

async fn assert_running(rt: &mut RuntimeServiceClient<Channel>, id: &str) {
    let state = container_state(rt, id).await;
    assert_eq!(state, cri::ContainerState::ContainerRunning as i32, "{id}");
}

/// The sandbox (pause) process's host pid from the verbose status' `info` JSON.
fn sandbox_pid(info: &HashMap<String, String>) -> u32 {
    let json: serde_json::Value =
        serde_json::from_str(info.get("info").expect("verbose info")).expect("info json");
    json["pid"].as_u64().expect("pid") as u32
}

/// `GET /` from `ip:port`, or None while it does not answer.
async fn http_get(ip: &str, port: i32) -> Option<String> {
    let addr = format!("{ip}:{port}");
    let call = async {
        let mut s = tokio::net::TcpStream::connect(&addr).await.ok()?;
        s.write_all(b"GET / HTTP/1.0\r\nHost: pod\r\n\r\n")
            .await
            .ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).await.ok()?;
        Some(body)
    };
    tokio::time::timeout(Duration::from_secs(2), call)
        .await
        .ok()
        .flatten()
}
