//! Probes and lifecycle hooks (`validateProbe`, `validateHandler`).

use k8s_openapi::api::core::v1::{Container, HTTPGetAction, LifecycleHandler, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::container::port_num_or_name;
use crate::field::{FieldError, Path, forbidden, invalid, not_supported, required};
use crate::meta::non_negative;
use crate::names::is_http_header_name;

/// Probes and lifecycle hooks: allowed on regular containers and restartable init containers.
pub fn validate_probes_and_lifecycle(
    c: &Container,
    grace: Option<i64>,
    path: &Path,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(l) = &c.lifecycle {
        for (name, h) in [("postStart", &l.post_start), ("preStop", &l.pre_stop)] {
            if let Some(h) = h {
                errs.extend(validate_lifecycle_handler(
                    h,
                    grace,
                    &path.child("lifecycle").child(name),
                ));
            }
        }
    }
    if let Some(p) = &c.liveness_probe {
        errs.extend(validate_probe(p, &path.child("livenessProbe")));
        errs.extend(success_threshold_is_one(p, &path.child("livenessProbe")));
    }
    if let Some(p) = &c.readiness_probe {
        let p_path = path.child("readinessProbe");
        errs.extend(validate_probe(p, &p_path));
        if let Some(t) = p.termination_grace_period_seconds {
            errs.push(invalid(
                &p_path.child("terminationGracePeriodSeconds"),
                t,
                "must not be set for readinessProbes",
            ));
        }
    }
    if let Some(p) = &c.startup_probe {
        errs.extend(validate_probe(p, &path.child("startupProbe")));
        errs.extend(success_threshold_is_one(p, &path.child("startupProbe")));
    }
    errs
}

fn success_threshold_is_one(p: &Probe, path: &Path) -> Vec<FieldError> {
    let st = p.success_threshold.unwrap_or(0);
    if st != 1 {
        vec![invalid(&path.child("successThreshold"), st, "must be 1")]
    } else {
        vec![]
    }
}

fn validate_probe(p: &Probe, path: &Path) -> Vec<FieldError> {
    let handlers: [(&str, bool); 4] = [
        ("exec", p.exec.is_some()),
        ("httpGet", p.http_get.is_some()),
        ("tcpSocket", p.tcp_socket.is_some()),
        ("grpc", p.grpc.is_some()),
    ];
    let mut errs = one_handler(&handlers, path);
    if let Some(e) = &p.exec {
        errs.extend(exec_command(e.command.as_deref(), &path.child("exec")));
    }
    if let Some(h) = &p.http_get {
        errs.extend(validate_http_get(h, &path.child("httpGet")));
    }
    if let Some(t) = &p.tcp_socket {
        errs.extend(port_num_or_name(
            &t.port,
            &path.child("tcpSocket").child("port"),
        ));
    }
    if let Some(g) = &p.grpc {
        errs.extend(port_num_or_name(
            &IntOrString::Int(g.port),
            &path.child("grpc").child("port"),
        ));
    }
    for (name, v) in [
        ("initialDelaySeconds", p.initial_delay_seconds),
        ("timeoutSeconds", p.timeout_seconds),
        ("periodSeconds", p.period_seconds),
        ("successThreshold", p.success_threshold),
        ("failureThreshold", p.failure_threshold),
    ] {
        errs.extend(non_negative(i64::from(v.unwrap_or(0)), &path.child(name)));
    }
    if let Some(t) = p.termination_grace_period_seconds.filter(|t| *t <= 0) {
        errs.push(invalid(
            &path.child("terminationGracePeriodSeconds"),
            t,
            "must be greater than 0",
        ));
    }
    errs
}

/// Exactly one handler: extra ones are forbidden, none is required.
fn one_handler(handlers: &[(&str, bool)], path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut seen = 0;
    for (name, on) in handlers {
        if *on {
            if seen > 0 {
                errs.push(forbidden(
                    &path.child(name),
                    "may not specify more than 1 handler type",
                ));
            }
            seen += 1;
        }
    }
    if seen == 0 {
        errs.push(required(path, "must specify a handler type"));
    }
    errs
}

fn validate_lifecycle_handler(
    h: &LifecycleHandler,
    grace: Option<i64>,
    path: &Path,
) -> Vec<FieldError> {
    let handlers: [(&str, bool); 4] = [
        ("exec", h.exec.is_some()),
        ("httpGet", h.http_get.is_some()),
        ("tcpSocket", h.tcp_socket.is_some()),
        ("sleep", h.sleep.is_some()),
    ];
    let mut errs = one_handler(&handlers, path);
    if let Some(e) = &h.exec {
        errs.extend(exec_command(e.command.as_deref(), &path.child("exec")));
    }
    if let Some(g) = &h.http_get {
        errs.extend(validate_http_get(g, &path.child("httpGet")));
    }
    if let Some(t) = &h.tcp_socket {
        errs.extend(port_num_or_name(
            &t.port,
            &path.child("tcpSocket").child("port"),
        ));
    }
    if let (Some(s), Some(g)) = (&h.sleep, grace)
        && (s.seconds < 0 || s.seconds > g)
    {
        errs.push(invalid(
            &path.child("sleep"),
            s.seconds,
            &format!("must be non-negative and less than terminationGracePeriodSeconds ({g})"),
        ));
    }
    errs
}

fn exec_command(cmd: Option<&[String]>, path: &Path) -> Vec<FieldError> {
    if cmd.is_none_or(<[String]>::is_empty) {
        vec![required(&path.child("command"), "")]
    } else {
        vec![]
    }
}

fn validate_http_get(h: &HTTPGetAction, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if h.path.as_deref().unwrap_or("").is_empty() {
        errs.push(required(&path.child("path"), ""));
    }
    errs.extend(port_num_or_name(&h.port, &path.child("port")));
    let scheme = h.scheme.as_deref().unwrap_or("");
    if scheme != "HTTP" && scheme != "HTTPS" {
        errs.push(not_supported(
            &path.child("scheme"),
            scheme,
            &["HTTP", "HTTPS"],
        ));
    }
    for hdr in h.http_headers.iter().flatten() {
        for m in is_http_header_name(&hdr.name) {
            errs.push(invalid(&path.child("httpHeaders"), &hdr.name, &m));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn container(v: serde_json::Value) -> Container {
        serde_json::from_value(v).unwrap_or_default()
    }

    #[test]
    fn probes_need_one_handler_and_success_one() {
        let c = container(
            json!({"name": "c", "livenessProbe": {"successThreshold": 2, "timeoutSeconds": 1, "periodSeconds": 1, "failureThreshold": 1}}),
        );
        let got: Vec<String> = validate_probes_and_lifecycle(&c, Some(30), &Path::new("c"))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            got,
            vec![
                "c.livenessProbe: Required value: must specify a handler type",
                "c.livenessProbe.successThreshold: Invalid value: 2: must be 1",
            ]
        );
    }
}
