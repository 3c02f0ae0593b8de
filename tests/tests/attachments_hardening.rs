//! Claim attachments hardened (issue #23, finding 5), over real HTTP on both backends: only
//! `http`/`https` URLs are kept, and one of another scheme already in the log is never redirected
//! to; `document` is strict base64 of a non-empty file; the bytes are stored only for a claim the
//! caller may attach to; downloads are `nosniff` and name the file by RFC 6266's `filename*`.
//! Each test here failed on the code before the fix.

use std::time::Duration;

use careledger_events::DomainEvent;
use careledger_events::claims::{Attachment, ClaimEvent, claim_stream};
use careledger_projections::dump_tables;
use careledger_store::{AppendRequest, ExpectedVersion};
use careledger_tests::{Answer, CLAIMS, Kind, TestServer, both_backends, token_at_facility, token_for};
use chrono::{Days, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

fn admin() -> String {
    token_for("admin", CLAIMS, None)
}

async fn wait(s: &TestServer, position: i64) {
    assert!(s.state().projections.wait_for(position, Duration::from_secs(10)).await, "read models behind");
}

/// A new ENTERED claim of `facility`; its uuid.
async fn claim(s: &TestServer, code: &str, facility: &str) -> String {
    let day = |n| (Utc::now().date_naive() - Days::new(n)).to_string();
    let body = json!({
        "code": code,
        "health_facility": facility,
        "insuree": "100000001",
        "date_from": day(5),
        "date_claimed": day(4),
        "icd": "A00",
        "items": [{ "code": "I1", "qty_provided": 1, "price_asked": 8 }],
    });
    let a = s.post("/api/v1/claims", &admin(), body).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    wait(s, a.position()).await;
    a.data()["uuid"].as_str().unwrap().to_string()
}

async fn attach(s: &TestServer, token: &str, claim: &str, body: Value) -> Answer {
    s.post(&format!("/api/v1/claims/{claim}/attachments"), token, body).await
}

/// Rows of `claim_attachment_files`, where the bytes are kept.
async fn stored_files(s: &TestServer) -> usize {
    let dump = dump_tables(s.state().store.db(), &["claim_attachment_files"]).await.unwrap();
    let head = dump.lines().next().unwrap_or_default();
    let count = head.trim_start_matches("## claim_attachment_files (").trim_end_matches(" rows)");
    count.parse().unwrap_or_else(|_| panic!("unexpected dump: {head}"))
}

/// A client that shows a redirect rather than following it.
fn no_redirect() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

async fn download(s: &TestServer, claim: &str, attachment: &str) -> reqwest::Response {
    no_redirect()
        .get(format!("{}/api/v1/claims/{claim}/attachments/{attachment}", s.base))
        .bearer_auth(admin())
        .send()
        .await
        .unwrap()
}

/// The id of the claim's last attachment in a command's answer.
fn last_attachment(a: &Answer) -> String {
    let all = a.data()["attachments"].as_array().unwrap_or_else(|| panic!("no attachments: {}", a.text));
    all.last().unwrap()["attachment_id"].as_str().unwrap().to_string()
}

both_backends!(only_http_and_https_urls_are_kept, urls_on);
async fn urls_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    let t = admin();
    let c = claim(&s, "URL", "HF1").await;
    for url in [
        "javascript:alert(1)",
        "JavaScript:alert(document.cookie)",
        " javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
        "file:///etc/passwd",
        "//evil.example/x",
        "http:///evil.example",
        "https://example.org\\@evil.example",
    ] {
        let a = attach(&s, &t, &c, json!({ "title": "x", "url": url })).await;
        assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {}", a.text);
        assert_eq!(a.invalid_entries(), vec!["$.url"], "{url}: {}", a.text);
    }
    // an update is held to the same rule
    let ok = attach(&s, &t, &c, json!({ "title": "Referral", "url": "HTTPS://example.org/r.pdf" })).await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.text);
    let id = last_attachment(&ok);
    let patch = s
        .request(
            Method::PATCH,
            &format!("/api/v1/claims/{c}/attachments/{id}"),
            Some(&t),
            Some(&json!({ "url": "javascript:alert(1)" }).to_string()),
        )
        .await;
    assert_eq!(patch.invalid_entries(), vec!["$.url"], "{}", patch.text);
    wait(&s, ok.position()).await;
    let link = download(&s, &c, &id).await;
    assert_eq!(
        (link.status(), link.headers()["location"].to_str().unwrap()),
        (StatusCode::FOUND, "https://example.org/r.pdf")
    );
}

both_backends!(a_logged_script_url_is_never_redirected_to, logged_url_on);
async fn logged_url_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    let c = claim(&s, "OLD", "HF1").await;
    let claim_id = Uuid::parse_str(&c).unwrap();
    // as the code before the fix wrote it: an attachment whose URL is a script
    let attachment_id = Uuid::now_v7();
    let event = ClaimEvent::AttachmentAdded {
        claim_id,
        attachment: Attachment {
            attachment_id,
            title: "old".into(),
            attachment_type: None,
            date: None,
            url: Some("javascript:alert(1)".into()),
            filename: None,
            mime: None,
            hash: None,
            size: None,
        },
        at: Utc::now(),
    };
    let new = careledger_tests::raw_event(event.event_type(), event.to_data(), "AddAttachment");
    let request = AppendRequest::single(claim_stream(claim_id), ExpectedVersion::Any, vec![new]);
    let outcome = s.state().store.append(&request).await.unwrap();
    wait(&s, outcome.last_position()).await;
    let answer = download(&s, &c, &attachment_id.to_string()).await;
    assert_eq!(answer.status(), StatusCode::CONFLICT);
    assert!(answer.headers().get("location").is_none(), "{:?}", answer.headers());
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["error"]["type"], "request_conflict", "{body}");
}

both_backends!(documents_are_strict_base64_of_a_file, documents_on);
async fn documents_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    let t = admin();
    let c = claim(&s, "DOC", "HF1").await;
    for document in ["aGVsbG8=junk!!", "", "  \n ", "aGVsbG8", "aGVsbG8==", "aGVs*bG8=", "=aGVsbG8"] {
        let a = attach(&s, &t, &c, json!({ "title": "x", "document": document })).await;
        assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{document:?}: {}", a.text);
        assert_eq!(a.invalid_entries(), vec!["$.document"], "{document:?}: {}", a.text);
    }
    // a URL does not make an empty document acceptable
    let both = attach(&s, &t, &c, json!({ "title": "x", "url": "https://example.org/", "document": "" })).await;
    assert_eq!(both.invalid_entries(), vec!["$.document"], "{}", both.text);
    assert_eq!(stored_files(&s).await, 0, "a refused document is not stored");
    // base64 broken into lines as MIME senders write it is the same file
    for document in ["aGVsbG8=", "aGVs\r\nbG8=\r\n"] {
        let a = attach(&s, &t, &c, json!({ "title": "hello", "document": document })).await;
        assert_eq!(a.status, StatusCode::CREATED, "{document:?}: {}", a.text);
        assert_eq!(a.data()["attachments"].as_array().unwrap().last().unwrap()["size"], 5);
    }
    assert_eq!(stored_files(&s).await, 1, "the same bytes are kept once");
}

both_backends!(bytes_are_stored_only_for_a_claim_the_caller_may_attach_to, bytes_on);
async fn bytes_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    let t = admin();
    let own = claim(&s, "OWN", "HF1").await;
    let other = claim(&s, "OTHER", "HF2").await;
    let deleted = claim(&s, "GONE", "HF1").await;
    let d = s.post("/api/v1/claims/delete", &t, json!({ "uuids": [deleted] })).await;
    assert_eq!(d.data()[0]["done"], true, "{}", d.text);
    let clerk = token_at_facility("clerk", CLAIMS, "HF1");
    // "orphan 1" to "orphan 4": other bytes each time, so no request's row can hide another's
    let documents = ["b3JwaGFuIDE=", "b3JwaGFuIDI=", "b3JwaGFuIDM=", "b3JwaGFuIDQ="];
    let unknown = Uuid::now_v7().to_string();
    for (token, claim, document, status) in [
        (&t, unknown.as_str(), documents[0], StatusCode::NOT_FOUND),
        (&clerk, other.as_str(), documents[1], StatusCode::FORBIDDEN),
        (&t, deleted.as_str(), documents[2], StatusCode::NOT_FOUND),
    ] {
        let a = attach(&s, token, claim, json!({ "title": "x", "document": document })).await;
        assert_eq!(a.status, status, "{claim}: {}", a.text);
    }
    // an update names an attachment the claim must have
    let patch = s
        .request(
            Method::PATCH,
            &format!("/api/v1/claims/{own}/attachments/{}", Uuid::now_v7()),
            Some(&t),
            Some(&json!({ "document": documents[3] }).to_string()),
        )
        .await;
    assert_eq!(patch.status, StatusCode::NOT_FOUND, "{}", patch.text);
    assert_eq!(stored_files(&s).await, 0, "a refused attachment left its bytes behind");

    // the caller's own claim takes the file; a repeat of the request answers the same, even
    // once the claim is gone
    let send = || {
        s.client
            .post(format!("{}/api/v1/claims/{own}/attachments", s.base))
            .bearer_auth(&clerk)
            .header("Idempotency-Key", "attach-once")
            .json(&json!({ "title": "kept", "document": documents[3] }))
            .send()
    };
    let first: Value = send().await.unwrap().json().await.unwrap();
    assert_eq!(first["meta"]["code"], 201, "{first}");
    assert_eq!(stored_files(&s).await, 1);
    let d = s.post("/api/v1/claims/delete", &t, json!({ "uuids": [own] })).await;
    assert_eq!(d.data()[0]["done"], true, "{}", d.text);
    let again = send().await.unwrap();
    assert_eq!(again.status(), StatusCode::CREATED);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["data"]["attachments"], first["data"]["attachments"]);
}

/// The bytes a `%XX`-encoded value stands for.
fn percent_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = text.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%' {
            let hex = std::str::from_utf8(&tail[..2]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            rest = &tail[2..];
        } else {
            out.push(b);
            rest = tail;
        }
    }
    out
}

both_backends!(downloads_are_not_sniffed_and_name_the_file_by_rfc_6266, downloads_on);
async fn downloads_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    let t = admin();
    let c = claim(&s, "DL", "HF1").await;
    let names = ["Счёт №1 (копия).pdf", "a \"quoted\" \\ name%41.txt", "two\r\nlines\t.txt"];
    for name in names {
        let a = attach(
            &s,
            &t,
            &c,
            json!({ "title": "file", "filename": name, "mime": "text/html", "document": "PGI+aGk8L2I+" }),
        )
        .await;
        assert_eq!(a.status, StatusCode::CREATED, "{name}: {}", a.text);
        wait(&s, a.position()).await;
        let answer = download(&s, &c, &last_attachment(&a)).await;
        assert_eq!(answer.status(), StatusCode::OK, "{name}");
        assert_eq!(answer.headers()["x-content-type-options"], "nosniff", "{name}");
        let disposition = answer.headers()["content-disposition"].to_str().unwrap().to_string();
        assert!(disposition.starts_with("attachment; filename=\""), "{disposition}");
        // the fallback: printable ASCII without quotes, backslashes or percent signs
        let fallback = disposition["attachment; filename=\"".len()..].split('"').next().unwrap();
        assert!(
            fallback.chars().all(|c| (c.is_ascii_graphic() || c == ' ') && !matches!(c, '"' | '\\' | '%')),
            "{disposition}"
        );
        assert!(disposition[..disposition.find("filename*").unwrap()].ends_with("\"; "), "{disposition}");
        // the name itself, percent-encoded UTF-8 of attr-chars
        let (_, encoded) = disposition.split_once("; filename*=UTF-8''").unwrap_or_else(|| panic!("{disposition}"));
        assert!(encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~%".contains(&b)), "{disposition}");
        assert_eq!(String::from_utf8(percent_decode(encoded)).unwrap(), name, "{disposition}");
        assert_eq!(answer.text().await.unwrap(), "<b>hi</b>");
    }
}
