//! The shortest path through hawkey: one request to a backend and back.

mod common;
use common::*;

#[test]
fn r1_request_reaches_the_backend_and_the_answer_comes_back() {
    let backend = Backend::fixed("hello");
    let hawkey = Hawkey::start(route_config("^/api/", &backend));
    let res = hawkey.get("/api/x?y=1");
    assert_eq!(res.status, 200);
    assert_eq!(res.body, b"hello");
    let reqs = backend.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].target, "/api/x?y=1");
}
