//! blackbox_exporter's chain metrics, `probe_ssl_last_chain_expiry_timestamp_seconds` and
//! `probe_ssl_last_chain_info`, compared with blackbox_exporter 0.23 probing the same nginx
//! servers with the same CA file: chains with an intermediate made at test time, an untrusted
//! chain, `insecure_skip_verify`, and a redirect to another server.

mod common;

use std::collections::BTreeMap;

use common::blackbox::Blackbox;
use common::*;
use rcgen::{CertifiedIssuer, DnType, KeyPair};

/// A CA.
type Ca = CertifiedIssuer<'static, KeyPair>;

/// A CA named `CN=cn,O=Example`, valid for `days` more days, signed by `by` or by itself.
fn ca(cn: &str, days: i64, by: Option<&Ca>) -> Ca {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, cn);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Example");
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = time_now() - time::Duration::days(1);
    params.not_after = time_now() + time::Duration::days(days);
    let key = KeyPair::generate().unwrap();
    match by {
        Some(issuer) => CertifiedIssuer::signed_by(params, key, issuer).unwrap(),
        None => CertifiedIssuer::self_signed(params, key).unwrap(),
    }
}

/// A server certificate for `names` with the subject `dn`, valid for 30 more days, issued by
/// `by`; the nginx server block serving it with `by` as its intermediate, and the SHA-256 of
/// its DER in hex.
fn server(names: &[&str], dn: &[(DnType, rcgen::DnValue)], by: &Ca) -> (TlsServer, String) {
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    for (t, v) in dn {
        params.distinguished_name.push(t.clone(), v.clone());
    }
    params.not_before = time_now() - time::Duration::days(1);
    params.not_after = time_now() + time::Duration::days(30);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, by).unwrap();
    let digest = ring::digest::digest(&ring::digest::SHA256, cert.der());
    let fingerprint = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let tls = TlsServer {
        cert_pem: format!("{}{}", cert.pem(), by.pem()),
        key_pem: key.serialize_pem(),
        extra: String::new(),
    };
    (tls, fingerprint)
}

/// The labels of the first `metric` line whose labels hold `target="target"` (any line, for
/// `None`), values as written (escaped).
fn labels(text: &str, metric: &str, target: Option<&str>) -> Option<BTreeMap<String, String>> {
    text.lines()
        .filter_map(|l| l.strip_prefix(metric)?.strip_prefix('{'))
        .map(parse_labels)
        .find(|m| target.is_none_or(|t| m.get("target").map(String::as_str) == Some(t)))
}

/// `k="v",k2="v2"} value` into its label pairs, values still escaped.
fn parse_labels(line: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = line;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    value.push(c);
                    if let Some((_, n)) = chars.next() {
                        value.push(n);
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.insert(key.trim_start_matches(',').to_owned(), value);
        rest = &after[end..];
        if rest.starts_with('}') {
            break;
        }
    }
    out
}

/// The four labels of `probe_ssl_last_chain_info`.
const INFO_LABELS: [&str; 4] = [
    "fingerprint_sha256",
    "issuer",
    "subject",
    "subjectalternative",
];

/// The `probe_ssl_last_chain_info` labels blackbox_exporter and we report, for one target.
fn info_labels(
    ours: &str,
    theirs: &str,
    target: &str,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let info = "probe_ssl_last_chain_info";
    let mut a = labels(ours, info, Some(target))
        .unwrap_or_else(|| panic!("we report no {info} for {target}:\n{ours}"));
    a.remove("target");
    let b = labels(theirs, info, None)
        .unwrap_or_else(|| panic!("blackbox reports no {info} for {target}:\n{theirs}"));
    let keys = |m: &BTreeMap<String, String>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&a), INFO_LABELS, "{target}");
    assert_eq!(keys(&b), INFO_LABELS, "{target}");
    (a, b)
}

#[test]
fn the_chain_metrics_are_those_of_blackbox_exporter() {
    let root = ca("Drop-in Root", 20, None);
    let inter = ca("Drop-in Intermediate", 40, Some(&root));
    let short = ca("Short Intermediate", 10, Some(&root));
    let other = ca("Unrelated Root", 20, None);
    let cn_o = [
        (DnType::CommonName, "localhost".into()),
        (DnType::OrganizationName, "Example".into()),
    ];
    let names = ["localhost", "www.example.test"];
    let email = rcgen::string::Ia5String::try_from("ops@example.test").unwrap();
    let exotic = [
        (DnType::CountryName, "DE".into()),
        (DnType::OrganizationName, "Example, Inc".into()),
        (DnType::OrganizationalUnitName, " Ops #1 ".into()),
        (DnType::CommonName, "localhost".into()),
        (
            DnType::CustomDnType(vec![1, 2, 840, 113549, 1, 9, 1]),
            rcgen::DnValue::Ia5String(email),
        ),
    ];
    let redirector = [(DnType::CommonName, "redirector".into())];
    let (a, a_fp) = server(&names, &cn_o, &inter);
    let (b, _) = server(&names, &cn_o, &short);
    let (e, _) = server(&["localhost"], &exotic, &inter);
    let (u, u_fp) = server(&names, &cn_o, &other);
    let (r, r_fp) = server(&["localhost"], &redirector, &inter);
    let nginx = Nginx::start_with(
        &[a, b, e, u, r],
        "        location = /hop { return 302 https://localhost:{tls0}/ok; }\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("root.pem");
    std::fs::write(&ca_file, root.pem()).unwrap();
    let ca_file = ca_file.display();
    let p = &nginx.tls_ports;
    let [chained, short_lived, exotic, untrusted, insecure, hop] = [
        format!("https://localhost:{}/ok", p[0]),
        format!("https://localhost:{}/ok", p[1]),
        format!("https://localhost:{}/ok", p[2]),
        format!("https://localhost:{}/ok", p[3]),
        format!("https://localhost:{}/insecure", p[3]),
        format!("https://localhost:{}/hop", p[4]),
    ];
    let e = Exporter::start(
        &format!(
            "defaults:\n  tls_config: {{ca_file: '{ca_file}'}}\ntargets:\n\
             - {chained}\n- {short_lived}\n- {exotic}\n- {untrusted}\n\
             - url: {insecure}\n  tls_config: {{insecure_skip_verify: true}}\n\
             - url: {hop}\n  follow_redirects: 1\n"
        ),
        &[],
    );
    let bb = Blackbox::start(&format!(
        "  tls:\n    prober: http\n    timeout: 5s\n    http:\n      preferred_ip_protocol: ip4\n\
         \x20     tls_config: {{ca_file: '{ca_file}'}}\n\
         \x20 insecure:\n    prober: http\n    timeout: 5s\n    http:\n      preferred_ip_protocol: ip4\n\
         \x20     tls_config: {{insecure_skip_verify: true}}\n"
    ));
    let ours = e.scrape(Some(10.0));
    let last = "probe_ssl_last_chain_expiry_timestamp_seconds";
    let days = |t: f64| (t - unix_now()) / 86_400.0;

    // Verified chains: the same expiry and the same labels.
    for target in [&chained, &short_lived, &exotic, &hop] {
        let theirs = bb.probe(target, "tls", &[]);
        assert_eq!(sample(&theirs, "probe_success", &[]), Some(1.0), "{theirs}");
        assert_eq!(target_sample(&ours, "probe_success", target), Some(1.0));
        let a = target_sample(&ours, last, target);
        let b = sample(&theirs, last, &[]);
        assert!(
            a.is_some() && a == b,
            "{target}: ours {a:?}, blackbox {b:?}"
        );
        let earliest = "probe_ssl_earliest_cert_expiry";
        assert_eq!(
            target_sample(&ours, earliest, target),
            sample(&theirs, earliest, &[]),
            "{target}"
        );
        let (a, b) = info_labels(&ours, &theirs, target);
        assert_eq!(a, b, "{target}");
    }
    // The root's NotAfter counts (20 days, before the leaf's 30 and the intermediate's 40),
    // and a short-lived intermediate's (10 days) does.
    let a = target_sample(&ours, last, &chained).unwrap();
    assert!((19.0..21.0).contains(&days(a)), "{a}");
    let a = target_sample(&ours, last, &short_lived).unwrap();
    assert!((9.0..11.0).contains(&days(a)), "{a}");
    // The formats, spelled out.
    let (a, _) = info_labels(&ours, &bb.probe(&chained, "tls", &[]), &chained);
    assert_eq!(a["fingerprint_sha256"], a_fp);
    assert_eq!(a["subject"], "CN=localhost,O=Example");
    assert_eq!(a["issuer"], "CN=Drop-in Intermediate,O=Example");
    assert_eq!(a["subjectalternative"], "localhost,www.example.test");
    let (a, _) = info_labels(&ours, &bb.probe(&exotic, "tls", &[]), &exotic);
    // Go's order and escaping (here escaped once more, as a label value), and an attribute
    // Go has no name for as its OID and the hex of its value's DER.
    assert_eq!(
        a["subject"],
        "CN=localhost,OU=\\\\ Ops #1\\\\ ,O=Example\\\\, Inc,C=DE,\
         1.2.840.113549.1.9.1=#0c106f7073406578616d706c652e74657374"
    );
    // A redirect: the facts of the last hop's server, not of the first.
    let (a, _) = info_labels(&ours, &bb.probe(&hop, "tls", &[]), &hop);
    assert_eq!(a["fingerprint_sha256"], a_fp);
    assert_ne!(a["fingerprint_sha256"], r_fp);

    // An untrusted chain: blackbox_exporter's handshake fails and it reports no TLS metric;
    // we report the leaf but no verified chain's expiry.
    let theirs = bb.probe(&untrusted, "tls", &[]);
    assert_eq!(sample(&theirs, "probe_success", &[]), Some(0.0));
    assert!(!theirs.contains("probe_ssl_last_chain"), "{theirs}");
    assert_eq!(
        reason(&ours, &untrusted).as_deref(),
        Some("tls_cert_untrusted")
    );
    assert_eq!(target_sample(&ours, last, &untrusted), None);
    let info = labels(&ours, "probe_ssl_last_chain_info", Some(&untrusted)).unwrap();
    assert_eq!(info["fingerprint_sha256"], u_fp);

    // insecure_skip_verify: no chain is verified. blackbox_exporter 0.23 reports Go's zero
    // time; we report no series. The leaf's labels agree.
    let theirs = bb.probe(&insecure, "insecure", &[]);
    assert_eq!(sample(&theirs, "probe_success", &[]), Some(1.0), "{theirs}");
    assert_eq!(sample(&theirs, last, &[]), Some(-62_135_596_800.0));
    assert_eq!(target_sample(&ours, "probe_success", &insecure), Some(1.0));
    assert_eq!(target_sample(&ours, last, &insecure), None);
    let (a, b) = info_labels(&ours, &theirs, &insecure);
    assert_eq!(a, b);
    assert_eq!(a["fingerprint_sha256"], u_fp);
}
