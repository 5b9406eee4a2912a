//! The control socket's request parser (`control::parse_request`, what the server runs
//! on each request line): never panics on any bytes, and an accepted request
//! re-serializes to a line that parses to the same request. The error response built
//! from a refusal serializes too.

use routevpn::control::{parse_request, Response};

pub fn control_request(data: &[u8]) {
    match parse_request(data) {
        Ok(req) => {
            let mut line = serde_json::to_string(&req).expect("request serializes");
            line.push('\n');
            assert_eq!(parse_request(line.as_bytes()).expect("re-parses"), req);
        }
        Err(e) => {
            let r = Response::Error {
                message: format!("invalid request: {e}"),
            };
            let s = serde_json::to_string(&r).expect("response serializes");
            assert!(!s.contains('\n'), "a response is one line");
        }
    }
}
