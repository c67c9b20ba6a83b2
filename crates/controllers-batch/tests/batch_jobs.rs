//! The Job and TTL-after-finished controllers on a real API server with hollow nodes and the
//! scheduler, seen through the API and `kubectl`. One server for the whole binary; each test
//! works in its own namespace.

mod common;

use common::{RT, WAIT, env, kubectl, namespace, template};
use k8rs_testing::eventually;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

async fn create_job(client: &kube::Client, ns: &str, body: serde_json::Value) -> Job {
    let job: Job = serde_json::from_value(body).expect("job");
    Api::<Job>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &job)
        .await
        .expect("create job")
}

async fn pods_of(client: &kube::Client, ns: &str, job: &str) -> Vec<Pod> {
    let lp = ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}"));
    Api::<Pod>::namespaced(client.clone(), ns)
        .list(&lp)
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

#[test]
fn job_runs_to_completion() {
    RT.block_on(async {
        let env = env().await;
        let client = env.server.client();
        namespace(&client, "complete").await;
        create_job(
            &client,
            "complete",
            json!({
                "metadata": {"name": "pi"},
                "spec": {"completions": 3, "parallelism": 2, "template": template("300ms", 0)}
            }),
        )
        .await;
        let out = kubectl(
            &env.server,
            &[
                "wait",
                "--for=condition=complete",
                "job/pi",
                "-n",
                "complete",
                "--timeout=20s",
            ],
        );
        assert!(out.contains("condition met"), "{out}");
        let job = Api::<Job>::namespaced(client.clone(), "complete")
            .get("pi")
            .await
            .expect("job");
        let status = job.status.expect("status");
        assert_eq!(
            (status.succeeded, status.failed, status.active),
            (Some(3), Some(0), Some(0))
        );
        assert!(status.completion_time.is_some() && status.start_time.is_some());
        // Every pod was counted and released.
        let pods = eventually("finalizers released", WAIT, || async {
            let pods = pods_of(&client, "complete", "pi").await;
            pods.iter()
                .all(|p| p.metadata.finalizers.as_ref().is_none_or(Vec::is_empty))
                .then_some(pods)
        })
        .await;
        assert_eq!(pods.len(), 3);
        let describe = eventually("events in describe", WAIT, || async {
            let out = kubectl(&env.server, &["describe", "job", "pi", "-n", "complete"]);
            (out.contains("Completed") && out.contains("SuccessfulCreate")).then_some(out)
        })
        .await;
        assert!(describe.contains("Created pod: pi-"), "{describe}");
    });
}

#[test]
fn failing_job_backs_off_then_fails() {
    RT.block_on(async {
        let env = env().await;
        let client = env.server.client();
        namespace(&client, "failing").await;
        create_job(
            &client,
            "failing",
            json!({
                "metadata": {"name": "bad"},
                "spec": {"backoffLimit": 1, "template": template("100ms", 3)}
            }),
        )
        .await;
        let out = kubectl(
            &env.server,
            &[
                "wait",
                "--for=condition=failed",
                "job/bad",
                "-n",
                "failing",
                "--timeout=20s",
            ],
        );
        assert!(out.contains("condition met"), "{out}");
        let job = Api::<Job>::namespaced(client.clone(), "failing")
            .get("bad")
            .await
            .expect("job");
        let status = job.status.expect("status");
        assert_eq!(status.failed, Some(2));
        let failed = status
            .conditions
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.type_ == "Failed");
        assert_eq!(
            failed.and_then(|c| c.reason).as_deref(),
            Some("BackoffLimitExceeded")
        );
        eventually("the BackoffLimitExceeded event", WAIT, || async {
            let out = kubectl(&env.server, &["get", "events", "-n", "failing"]);
            out.contains("BackoffLimitExceeded").then_some(())
        })
        .await;
    });
}

#[test]
fn indexed_job_completes_every_index_with_its_hostname() {
    RT.block_on(async {
        let env = env().await;
        let client = env.server.client();
        namespace(&client, "indexed").await;
        let mut tmpl = template("200ms", 0);
        tmpl["spec"]["subdomain"] = json!("workers");
        create_job(
            &client,
            "indexed",
            json!({
                "metadata": {"name": "idx"},
                "spec": {"completions": 3, "parallelism": 3, "completionMode": "Indexed",
                         "template": tmpl}
            }),
        )
        .await;
        kubectl(
            &env.server,
            &[
                "wait",
                "--for=condition=complete",
                "job/idx",
                "-n",
                "indexed",
                "--timeout=20s",
            ],
        );
        let job = Api::<Job>::namespaced(client.clone(), "indexed")
            .get("idx")
            .await
            .expect("job");
        assert_eq!(
            job.status.and_then(|s| s.completed_indexes).as_deref(),
            Some("0-2")
        );
        let mut indexes: Vec<(String, String)> = pods_of(&client, "indexed", "idx")
            .await
            .into_iter()
            .map(|p| {
                let index = p.metadata.annotations.unwrap_or_default()
                    ["batch.kubernetes.io/job-completion-index"].clone();
                (index, p.spec.and_then(|s| s.hostname).unwrap_or_default())
            })
            .collect();
        indexes.sort();
        let want: Vec<(String, String)> = (0..3)
            .map(|i| (i.to_string(), format!("idx-{i}")))
            .collect();
        assert_eq!(indexes, want);
    });
}

#[test]
fn pod_failure_policy_fails_the_job_at_once() {
    RT.block_on(async {
        let env = env().await;
        let client = env.server.client();
        namespace(&client, "policy").await;
        create_job(&client, "policy", json!({
            "metadata": {"name": "fatal"},
            "spec": {"backoffLimit": 6, "template": template("100ms", 42),
                     "podFailurePolicy": {"rules": [
                         {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]}}
        }))
        .await;
        kubectl(
            &env.server,
            &[
                "wait",
                "--for=condition=failed",
                "job/fatal",
                "-n",
                "policy",
                "--timeout=20s",
            ],
        );
        let job = Api::<Job>::namespaced(client.clone(), "policy")
            .get("fatal")
            .await
            .expect("job");
        let status = job.status.expect("status");
        assert_eq!(status.failed, Some(1));
        let reasons: Vec<String> = status
            .conditions
            .unwrap_or_default()
            .into_iter()
            .filter_map(|c| c.reason)
            .collect();
        assert_eq!(reasons, ["PodFailurePolicy", "PodFailurePolicy"]);
    });
}

#[test]
fn suspended_job_waits_then_ttl_deletes_it_when_done() {
    RT.block_on(async {
        let env = env().await;
        let client = env.server.client();
        namespace(&client, "suspend").await;
        create_job(
            &client,
            "suspend",
            json!({
                "metadata": {"name": "later"},
                "spec": {"suspend": true, "ttlSecondsAfterFinished": 0,
                         "template": template("100ms", 0)}
            }),
        )
        .await;
        kubectl(
            &env.server,
            &[
                "wait",
                "--for=condition=suspended",
                "job/later",
                "-n",
                "suspend",
                "--timeout=20s",
            ],
        );
        assert!(pods_of(&client, "suspend", "later").await.is_empty());
        kubectl(
            &env.server,
            &[
                "patch",
                "job/later",
                "-n",
                "suspend",
                "--type=merge",
                "-p",
                r#"{"spec":{"suspend":false}}"#,
            ],
        );
        let jobs: Api<Job> = Api::namespaced(client.clone(), "suspend");
        eventually("the finished Job deleted by its TTL", WAIT, || async {
            matches!(jobs.get_opt("later").await, Ok(None)).then_some(())
        })
        .await;
    });
}

#[test]
fn job_adopts_a_matching_orphan_pod_and_counts_it() {
    RT.block_on(async {
        let env = env().await;
        let client = env.server.client();
        namespace(&client, "adopt").await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), "adopt");
        let mut orphan = template("2s", 0);
        orphan["metadata"]["name"] = json!("stray");
        orphan["metadata"]["labels"] = json!({"app": "adopt"});
        let orphan: Pod = serde_json::from_value(orphan).expect("pod");
        pods.create(&PostParams::default(), &orphan)
            .await
            .expect("create the orphan");
        eventually("the orphan to run", WAIT, || async {
            let pod = pods.get("stray").await.ok()?;
            let phase = pod.status?.phase?;
            (phase != "Pending").then_some(())
        })
        .await;
        // A manual selector that the orphan matches; one completion, which the orphan makes.
        let mut tmpl = template("2s", 0);
        tmpl["metadata"]["labels"] = json!({"app": "adopt"});
        let job = create_job(
            &client,
            "adopt",
            json!({
                "metadata": {"name": "taker"},
                "spec": {"manualSelector": true, "selector": {"matchLabels": {"app": "adopt"}},
                         "completions": 1, "parallelism": 1, "template": tmpl}
            }),
        )
        .await;
        kubectl(
            &env.server,
            &[
                "wait",
                "--for=condition=complete",
                "job/taker",
                "-n",
                "adopt",
                "--timeout=30s",
            ],
        );
        let status = Api::<Job>::namespaced(client.clone(), "adopt")
            .get("taker")
            .await
            .expect("job")
            .status
            .expect("status");
        assert_eq!((status.succeeded, status.failed), (Some(1), Some(0)));
        let all = pods.list(&ListParams::default()).await.expect("pods").items;
        let names: Vec<_> = all.iter().filter_map(|p| p.metadata.name.clone()).collect();
        assert_eq!(names, ["stray"], "the Job created no pod of its own");
        let owner = all[0]
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .cloned()
            .expect("a controller reference");
        assert_eq!(
            (owner.kind.as_str(), owner.uid),
            ("Job", job.metadata.uid.expect("uid"))
        );
        eventually("the tracking finalizer released", WAIT, || async {
            let pod = pods.get("stray").await.ok()?;
            pod.metadata
                .finalizers
                .is_none_or(|f| f.is_empty())
                .then_some(())
        })
        .await;
    });
}
