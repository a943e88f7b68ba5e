//! The Prometheus text builder, checked against the strict parser in `prom.rs`, and
//! the parser itself checked against text it must refuse.

use crate::prom::{parse_prometheus, Sample};
use felhom_agent::metrics::{Kind, MetricsError, MetricsText};

/// Renders, asserts the exact text, and asserts that the strict parser accepts it.
fn check(m: &MetricsText, expected: &str) -> Vec<Sample> {
    let text = m.render();
    assert_eq!(text, expected);
    parse_prometheus(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[test]
fn families_stay_together_in_insertion_order() {
    let mut m = MetricsText::new();
    let help = "Actions applied, by kind and result.";
    m.counter(
        "felhom_actions_total",
        help,
        &[("kind", "start"), ("result", "ok")],
        3.0,
    )
    .unwrap();
    m.gauge(
        "felhom_up",
        "1 when the last pass reached the API.",
        &[],
        1.0,
    )
    .unwrap();
    m.counter(
        "felhom_actions_total",
        "ignored later help",
        &[("kind", "stop"), ("result", "failed")],
        1.0,
    )
    .unwrap();
    m.gauge("felhom_last_pass_seconds", "", &[], 0.25).unwrap();
    let samples = check(
        &m,
        "# HELP felhom_actions_total Actions applied, by kind and result.\n\
         # TYPE felhom_actions_total counter\n\
         felhom_actions_total{kind=\"start\",result=\"ok\"} 3\n\
         felhom_actions_total{kind=\"stop\",result=\"failed\"} 1\n\
         # HELP felhom_up 1 when the last pass reached the API.\n\
         # TYPE felhom_up gauge\n\
         felhom_up 1\n\
         # TYPE felhom_last_pass_seconds gauge\n\
         felhom_last_pass_seconds 0.25\n",
    );
    assert_eq!(samples.len(), 4);
    assert_eq!(samples[1].label("kind"), Some("stop"));
    assert_eq!(samples[1].label("vmid"), None);
    assert_eq!(samples[3].value, 0.25);
}

#[test]
fn label_values_and_help_are_escaped() {
    let mut m = MetricsText::new();
    let nasty = "a \"quoted\" back\\slash\nand newline";
    m.gauge(
        "felhom_guest_info",
        "Help with \\ and\nnewline.",
        &[("description", nasty)],
        1.0,
    )
    .unwrap();
    let samples = check(
        &m,
        "# HELP felhom_guest_info Help with \\\\ and\\nnewline.\n\
         # TYPE felhom_guest_info gauge\n\
         felhom_guest_info{description=\"a \\\"quoted\\\" back\\\\slash\\nand newline\"} 1\n",
    );
    assert_eq!(
        samples[0].labels,
        [("description".to_string(), nasty.to_string())]
    );
}

#[test]
fn special_and_large_values() {
    let mut m = MetricsText::new();
    for (i, v) in [
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        -0.5,
        1e21,
        1e-7,
        1.5e9,
    ]
    .into_iter()
    .enumerate()
    {
        m.gauge("g", "", &[("i", &i.to_string())], v).unwrap();
    }
    m.counter("c_total", "", &[], f64::INFINITY).unwrap();
    let samples = check(
        &m,
        "# TYPE g gauge\n\
         g{i=\"0\"} +Inf\n\
         g{i=\"1\"} -Inf\n\
         g{i=\"2\"} NaN\n\
         g{i=\"3\"} -0.5\n\
         g{i=\"4\"} 1000000000000000000000\n\
         g{i=\"5\"} 0.0000001\n\
         g{i=\"6\"} 1500000000\n\
         # TYPE c_total counter\n\
         c_total +Inf\n",
    );
    assert!(samples[2].value.is_nan());
    assert_eq!(samples[4].value, 1e21);
    assert_eq!(samples[5].value, 1e-7);
}

#[test]
fn empty_builder_renders_nothing() {
    check(&MetricsText::new(), "");
}

#[test]
fn caller_mistakes_are_errors() {
    let mut m = MetricsText::new();
    for bad in ["", "1abc", "has-dash", "sp ace", "ünï"] {
        assert_eq!(
            m.gauge(bad, "", &[], 1.0),
            Err(MetricsError::InvalidName(bad.to_string()))
        );
    }
    m.gauge("ok:name_1", "", &[], 1.0).unwrap();
    for bad in ["", "__reserved", "a:b", "9x"] {
        let err = m.gauge("g", "", &[(bad, "v")], 1.0).unwrap_err();
        assert!(
            matches!(err, MetricsError::InvalidLabelName { .. }),
            "{bad}"
        );
    }
    let err = m
        .gauge("g", "", &[("a", "1"), ("a", "2")], 1.0)
        .unwrap_err();
    assert_eq!(err.to_string(), "label a given twice on metric g");

    m.gauge("g", "", &[("vmid", "101")], 1.0).unwrap();
    let err = m.gauge("g", "", &[("vmid", "101")], 2.0).unwrap_err();
    assert_eq!(err.to_string(), "metric g{vmid=\"101\"} given twice");
    let err = m.counter("g", "", &[("vmid", "102")], 1.0).unwrap_err();
    assert_eq!(
        err,
        MetricsError::KindConflict {
            metric: "g".into(),
            first: Kind::Gauge,
            now: Kind::Counter
        }
    );
    assert_eq!(
        err.to_string(),
        "metric g is a gauge and cannot also be a counter"
    );
    for bad in [-1.0, f64::NAN] {
        let err = m.counter("c_total", "", &[], bad).unwrap_err();
        assert!(matches!(err, MetricsError::InvalidCounterValue { .. }));
    }
    // None of the refused samples left a trace.
    check(
        &m,
        "# TYPE ok:name_1 gauge\nok:name_1 1\n# TYPE g gauge\ng{vmid=\"101\"} 1\n",
    );
}

#[test]
fn write_to_replaces_the_file() {
    let dir = std::env::temp_dir().join(format!("felhom-metrics-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("felhom-agent.prom");
    let mut m = MetricsText::new();
    m.gauge("felhom_up", "", &[], 0.0).unwrap();
    m.write_to(&path).unwrap();
    m.gauge("felhom_guests", "", &[], 4.0).unwrap();
    m.write_to(&path).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), m.render());
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["felhom-agent.prom"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn parser_accepts_valid_text() {
    let text = "# a comment\n\
                # HELP h_seconds Latency.\n\
                # TYPE h_seconds histogram\n\
                h_seconds_bucket{le=\"0.1\"} 1\n\
                h_seconds_bucket{le=\"+Inf\",} 2\n\
                h_seconds_sum 0.3\n\
                h_seconds_count 2\n\
                \n\
                # TYPE s summary\n\
                s{quantile=\"0.5\"} 1e3\n\
                s_count 4\n\
                # TYPE e gauge\n\
                e{} -Inf\n";
    let samples = parse_prometheus(text).unwrap();
    assert_eq!(samples.len(), 7);
    assert_eq!(samples[1].label("le"), Some("+Inf"));
    assert_eq!(samples[4].value, 1000.0);
    assert_eq!(samples[6].value, f64::NEG_INFINITY);
}

#[test]
fn parser_refuses_invalid_text() {
    let bad = [
        ("x 1\n", "has no TYPE line"),
        ("# TYPE x gauge\nx 1", "does not end in a line feed"),
        ("# TYPE x gauge\nx 1\n# TYPE x gauge\n", "after its samples"),
        ("# TYPE x gauge\n# TYPE x counter\nx 1\n", "second TYPE"),
        ("# HELP x a\n# HELP x b\n# TYPE x gauge\n", "second HELP"),
        ("# HELP x bad \\t escape\n", "bad escape in HELP"),
        ("# TYPE x gauges\n", "unknown type"),
        (
            "# TYPE x gauge\n# TYPE y gauge\ny 1\nx 1\n",
            "not one group",
        ),
        ("# TYPE x gauge\nx 1\nx 2\n", "duplicate series"),
        (
            "# TYPE x gauge\nx{a=\"1\",b=\"2\"} 1\nx{b=\"2\",a=\"1\"} 1\n",
            "duplicate series",
        ),
        ("# TYPE x gauge\nx 1 1700000000000\n", "timestamp"),
        ("# TYPE x gauge\nx one\n", "invalid value"),
        ("# TYPE x gauge\nx inf\n", "invalid value"),
        ("# TYPE x gauge\nx nan\n", "invalid value"),
        ("# TYPE x gauge\nx\n", "no blank"),
        ("# TYPE x gauge\nx{a=1} 1\n", "not quoted"),
        ("# TYPE x gauge\nx{a=\"1\" 1\n", "expected ','"),
        ("# TYPE x gauge\nx{a=\"1} 1\n", "unterminated"),
        ("# TYPE x gauge\nx{a=\"\\t\"} 1\n", "bad escape"),
        ("# TYPE x gauge\nx{a=\"1\",a=\"2\"} 1\n", "twice"),
        ("# TYPE x gauge\nx{1a=\"1\"} 1\n", "invalid label name"),
        ("# TYPE x-y gauge\n", "invalid metric name"),
        ("# TYPE h histogram\nh 1\n", "has no TYPE line"),
        ("# TYPE c counter\nc_count 1\n", "has no TYPE line"),
    ];
    for (text, want) in bad {
        match parse_prometheus(text) {
            Ok(s) => panic!("accepted {text:?}: {s:?}"),
            Err(e) => assert!(e.contains(want), "{text:?}: {e:?} lacks {want:?}"),
        }
    }
}
