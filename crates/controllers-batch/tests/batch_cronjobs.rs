//! The CronJob controller (with the Job controller) on a real API server with hollow nodes and
//! the scheduler. The CronJob controller runs on a clock the tests move, so schedule times come
//! at once; only one test moves it.

mod common;

use common::{RT, WAIT, env, kubectl, namespace, template};
use k8rs_testing::eventually;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use serde_json::json;

async fn create_cronjob(client: &kube::Client, ns: &str, body: serde_json::Value) -> CronJob {
    let cj: CronJob = serde_json::from_value(body).expect("cronjob");
    Api::<CronJob>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &cj)
        .await
        .expect("create cronjob")
}

async fn jobs_of(client: &kube::Client, ns: &str, cj: &str) -> Vec<Job> {
    let list = Api::<Job>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let mut jobs: Vec<Job> = list
        .into_iter()
        .filter(|j| {
            j.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.kind == "CronJob" && o.name == cj)
        })
        .collect();
    jobs.sort_by_key(|j| j.metadata.name.clone());
    jobs
}

fn touch(server: &k8rs_testing::TestServer, ns: &str, cj: &str, n: u32) {
    kubectl(
        server,
        &[
            "annotate",
            "--overwrite",
            "-n",
            ns,
            &format!("cronjob/{cj}"),
            &format!("test/touch={n}"),
        ],
    );
}

/// The schedule time the Job of a `* * * * *` CronJob gets when the clock reads `now`.
fn minute_of(now: Timestamp) -> Timestamp {
    Timestamp::from_second(now.as_second().div_euclid(60) * 60).expect("minute")
}

#[test]
fn schedules_jobs_tracks_them_and_trims_history() {
    RT.block_on(async {
        let env = env().await;
        let client = env.server.client();
        let server = &env.server;
        namespace(&client, "cron").await;
        let cj = create_cronjob(
            &client,
            "cron",
            json!({
                "metadata": {"name": "tick"},
                "spec": {"schedule": "* * * * *", "concurrencyPolicy": "Forbid",
                         "successfulJobsHistoryLimit": 1,
                         "jobTemplate": {"metadata": {"labels": {"team": "a"}},
                                         "spec": {"template": template("200ms", 0)}}}
            }),
        )
        .await;
        let created = cj.metadata.creation_timestamp.expect("created").0;
        let first = created + SignedDuration::from_secs(61);
        env.cron_clock.set(first);
        touch(server, "cron", "tick", 1);
        let jobs = eventually("the first scheduled Job", WAIT, || async {
            let jobs = jobs_of(&client, "cron", "tick").await;
            (!jobs.is_empty()).then_some(jobs)
        })
        .await;
        let scheduled = minute_of(first);
        let name = format!("tick-{}", scheduled.as_second() / 60);
        assert_eq!(jobs[0].metadata.name.as_deref(), Some(name.as_str()));
        let annotations = jobs[0].metadata.annotations.clone().unwrap_or_default();
        assert_eq!(
            annotations["batch.kubernetes.io/cronjob-scheduled-timestamp"],
            scheduled.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
        );
        assert_eq!(
            jobs[0].metadata.labels.clone().unwrap_or_default()["team"],
            "a"
        );
        kubectl(
            server,
            &[
                "wait",
                "--for=condition=complete",
                &format!("job/{name}"),
                "-n",
                "cron",
                "--timeout=20s",
            ],
        );
        let cronjobs: Api<CronJob> = Api::namespaced(client.clone(), "cron");
        let status = eventually("the finished Job leaves status.active", WAIT, || async {
            let status = cronjobs.get("tick").await.ok()?.status?;
            (status.active.as_ref().is_none_or(Vec::is_empty)
                && status.last_successful_time.is_some())
            .then_some(status)
        })
        .await;
        assert_eq!(status.last_schedule_time.map(|t| t.0), Some(scheduled));
        // The next minute: a second Job, after which the first one is beyond the history limit.
        env.cron_clock.set(first + SignedDuration::from_secs(60));
        touch(server, "cron", "tick", 2);
        let second = format!("tick-{}", scheduled.as_second() / 60 + 1);
        eventually(
            "the second Job completes and the first is deleted",
            WAIT,
            || async {
                let jobs = jobs_of(&client, "cron", "tick").await;
                let names: Vec<String> = jobs
                    .iter()
                    .filter_map(|j| j.metadata.name.clone())
                    .collect();
                (names == [second.clone()]).then_some(())
            },
        )
        .await;
        let out = kubectl(server, &["get", "cronjob", "tick", "-n", "cron"]);
        assert!(out.contains("* * * * *") && out.contains("False"), "{out}");
        let describe = eventually("events in describe", WAIT, || async {
            let out = kubectl(server, &["describe", "cronjob", "tick", "-n", "cron"]);
            ["SuccessfulCreate", "SawCompletedJob", "SuccessfulDelete"]
                .iter()
                .all(|r| out.contains(r))
                .then_some(out)
        })
        .await;
        assert!(
            describe.contains(&format!("Created job {name}")),
            "{describe}"
        );
    });
}

#[test]
fn kubectl_creates_a_job_from_a_cronjob() {
    RT.block_on(async {
        let env = env().await;
        let client = env.server.client();
        let server = &env.server;
        namespace(&client, "manual").await;
        create_cronjob(
            &client,
            "manual",
            json!({
                "metadata": {"name": "nightly"},
                "spec": {"schedule": "0 3 * * *", "timeZone": "Europe/Paris", "suspend": true,
                         "jobTemplate": {"spec": {"template": template("100ms", 0)}}}
            }),
        )
        .await;
        kubectl(
            server,
            &[
                "create",
                "job",
                "--from=cronjob/nightly",
                "now",
                "-n",
                "manual",
            ],
        );
        kubectl(
            server,
            &[
                "wait",
                "--for=condition=complete",
                "job/now",
                "-n",
                "manual",
                "--timeout=20s",
            ],
        );
        let job = Api::<Job>::namespaced(client.clone(), "manual")
            .get("now")
            .await
            .expect("job");
        let annotations = job.metadata.annotations.unwrap_or_default();
        assert_eq!(annotations["cronjob.kubernetes.io/instantiate"], "manual");
        assert_eq!(job.status.and_then(|s| s.succeeded), Some(1));
    });
}
