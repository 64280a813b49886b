//! Issue 28, item 1: no spelling of a path escapes the route its decoded, normalised form
//! selects. With `/` open and `/admin` and `/basic` behind auth, percent-encodings, `;`
//! parameters and dot segments of the protected paths get 401 (never the open backend's
//! 200), and NUL, control bytes and bad escapes get 400, on every path through the proxy:
//! the fast lane, Pingora's HTTP/1.1 session (`fast_lane: false`) and h2c.

use crate::common;

use common::raw::Conn;
use common::*;

const HOST: &str = "h.example.com";

fn doc(open: &TestBackend, admin: &TestBackend) -> String {
    format!(
        r#"upstreams:
  {HOST}:
    paths:
      "/":
        servers: ["{open}"]
      "/admin":
        servers: ["{admin}"]
        authorization: {{type: basic, creds: "alice:wonderland"}}
      "/basic":
        servers: ["{admin}"]
        authorization: {{type: apikey, creds: "k-123"}}
"#,
        open = open.server(),
        admin = admin.server()
    )
}

/// The status answered to `GET target` over HTTP/1.1 (sent exactly as written).
async fn status_of(proxy: &Proxy, target: &str) -> u16 {
    let mut conn = Conn::open(proxy).await;
    conn.send(format!("GET {target} HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes())
        .await;
    conn.response(false).await.status
}

#[tokio::test(flavor = "multi_thread")]
async fn encoded_and_parameterised_paths_keep_their_routes_auth() {
    let open = TestBackend::start("open").await;
    let admin = TestBackend::start("admin").await;
    let doc = doc(&open, &admin);
    let protected = [
        "/admin",
        "/%61dmin",
        "/adm%69n/secret",
        "/bas%69c/x",
        "/admin;x=1",
        "/admin;x=1/y",
        "/public/..;/admin",
        "/public/%2e%2e/admin",
        "/public%2f..%2fadmin",
        "//admin",
        "/./admin",
        "/public/..\\admin",
    ];
    let refused = ["/admin%00", "/admin%0d%0aX:1", "/x%zz", "/x%4", "/%7f"];
    for (way, proxy) in both_engines(&doc).await {
        for path in protected {
            let status = status_of(&proxy, path).await;
            assert_eq!(status, 401, "{way} {path}: must need credentials");
        }
        for path in refused {
            assert_eq!(status_of(&proxy, path).await, 400, "{way} {path}");
        }
        assert_eq!(status_of(&proxy, "/public/x").await, 200, "{way}");
        // h2c on the same proxy.
        for path in protected {
            if path.contains('\\') {
                continue; // not a valid URI for the h2 client
            }
            assert_eq!(h2c_status(&proxy, HOST, path).await, 401, "h2c {path}");
        }
        for path in refused {
            if path.contains("%zz") || path.ends_with("%4") {
                continue; // the h2 client's URI parser refuses these itself
            }
            assert_eq!(h2c_status(&proxy, HOST, path).await, 400, "h2c {path}");
        }
    }
    assert_eq!(
        admin.served(),
        0,
        "no request reached the protected backend"
    );
}

/// A deterministic pseudo-random sequence (xorshift), so that a failure repeats.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// `path` with each byte after the leading `/` percent-encoded or not, at random, in either
/// case of hex (a target must start with a `/`).
fn encode_randomly(path: &str, rng: &mut Rng) -> String {
    let rest: String = path[1..]
        .bytes()
        .map(|b| match rng.below(3) {
            0 if b != b'/' || rng.below(4) == 0 => format!("%{b:02X}"),
            1 if b != b'/' => format!("%{b:02x}"),
            _ => (b as char).to_string(),
        })
        .collect();
    format!("/{rest}")
}

#[tokio::test(flavor = "multi_thread")]
async fn random_encodings_route_as_their_decoded_path() {
    let open = TestBackend::start("open").await;
    let admin = TestBackend::start("admin").await;
    let doc = doc(&open, &admin);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let paths = [
        ("/admin/x", 401),
        ("/admin", 401),
        ("/basic/y.txt", 401),
        ("/a/../admin/", 401),
        ("/admins", 200),
        ("/open/admin", 200),
        ("/x/./y", 200),
    ];
    for (way, proxy) in both_engines(&doc).await {
        for _ in 0..12 {
            let (path, want) = paths[rng.below(paths.len())];
            let encoded = encode_randomly(path, &mut rng);
            let status = status_of(&proxy, &encoded).await;
            assert_eq!(status, want, "{way} {encoded} (decoded {path})");
            let status = h2c_status(&proxy, HOST, &encoded).await;
            assert_eq!(status, want, "h2c {encoded} (decoded {path})");
        }
    }
}
