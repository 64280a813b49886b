//! The X-Forwarded-* and X-Real-IP headers sent upstream.

use std::borrow::Cow;
use std::net::IpAddr;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use pingora::{ErrorType, OrErr, Result};

use super::outgoing::Outgoing;

/// A field the proxy sets: its name, parsed once, and as it goes on the wire (Pingora's
/// path sends names as written). Statics, so that a request's edits can borrow them.
struct Forwarding {
    name: HeaderName,
    written: Bytes,
}

impl Forwarding {
    /// `name` in lowercase (parsed), and as `written`.
    const fn new(name: &'static str, written: &'static str) -> Self {
        Forwarding {
            name: HeaderName::from_static(name),
            written: Bytes::from_static(written.as_bytes()),
        }
    }
}

static XFF: Forwarding = Forwarding::new("x-forwarded-for", "X-Forwarded-For");
static REAL_IP: Forwarding = Forwarding::new("x-real-ip", "X-Real-IP");
static PROTO: Forwarding = Forwarding::new("x-forwarded-proto", "X-Forwarded-Proto");
static HOST: Forwarding = Forwarding::new("x-forwarded-host", "X-Forwarded-Host");
/// Whether `name` is `X-Forwarded-For`, the chain of client addresses the proxy extends: a
/// route's `headers` cannot replace it (a backend trusts its last entry to be the client).
/// The other forwarding fields may be set by a route (`X-Forwarded-Proto: https` behind a
/// load balancer that terminates TLS, as nginx's `proxy_set_header` allows).
pub fn is_client_chain(name: &HeaderName) -> bool {
    *name == XFF.name
}

static HTTP: HeaderValue = HeaderValue::from_static("http");
static HTTPS: HeaderValue = HeaderValue::from_static("https");

/// Appends the client (`client`, its address as header text: [`ip_value`]) to any existing
/// `X-Forwarded-For` chain and sets `X-Forwarded-Proto`, `X-Forwarded-Host` and
/// `X-Real-IP`, replacing what the client sent for those three.
pub fn set_forwarded_headers<'a>(
    req: &mut impl Outgoing<'a>,
    client: Option<&'a HeaderValue>,
    https: bool,
    host: Option<&'a HeaderValue>,
) -> Result<()> {
    if let Some(ip) = client {
        let chain = {
            // A value that is not text is left out, as Pingora's path leaves it out.
            let values = req.values(&XFF.name);
            let mut previous = values.iter().filter(|v| is_text(v));
            match previous.next() {
                None => Cow::Borrowed(ip),
                Some(first) => {
                    let mut chain = first.to_vec();
                    for more in previous {
                        chain.extend_from_slice(b", ");
                        chain.extend_from_slice(more);
                    }
                    chain.extend_from_slice(b", ");
                    chain.extend_from_slice(ip.as_bytes());
                    Cow::Owned(value(chain)?)
                }
            }
        };
        set(req, &XFF, chain)?;
        set(req, &REAL_IP, Cow::Borrowed(ip))?;
    }
    set(
        req,
        &PROTO,
        Cow::Borrowed(if https { &HTTPS } else { &HTTP }),
    )?;
    if let Some(host) = host {
        set(req, &HOST, Cow::Borrowed(host))?;
    }
    Ok(())
}

fn set<'a>(
    req: &mut impl Outgoing<'a>,
    field: &'static Forwarding,
    v: Cow<'a, HeaderValue>,
) -> Result<()> {
    req.set(&field.name, &field.written, v)
}

/// Whether a field value is text, as `HeaderValue::to_str` takes it.
fn is_text(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
}

/// A header value from text the request or the socket gave.
fn value<T>(text: T) -> Result<HeaderValue>
where
    HeaderValue: TryFrom<T, Error = http::header::InvalidHeaderValue>,
{
    HeaderValue::try_from(text).or_err(ErrorType::InvalidHTTPHeader, "forwarding header value")
}

/// The client's address as a header value, for [`set_forwarded_headers`]: made once per
/// connection on the fast lane.
pub fn ip_value(ip: IpAddr) -> Result<HeaderValue> {
    value(ip_text(ip))
}

/// The client's address as header text. IPv4 is written with `itoa` rather than `Display`,
/// whose formatting machinery cost more than a thousand instructions per request.
fn ip_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let mut text = String::with_capacity(15);
            let mut digits = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text.push('.');
                }
                text.push_str(digits.format(octet));
            }
            text
        }
        IpAddr::V6(_) => ip.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora::http::RequestHeader;

    fn header(req: &RequestHeader, name: &str) -> Option<String> {
        req.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }

    #[test]
    fn chain_is_kept_and_extended() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.append_header("X-Forwarded-For", "1.1.1.1").unwrap();
        req.append_header("X-Forwarded-For", "2.2.2.2, 3.3.3.3")
            .unwrap();
        req.insert_header("X-Real-IP", "6.6.6.6").unwrap();
        let ip = ip_value("10.0.0.5".parse().unwrap()).unwrap();
        let host = HeaderValue::from_static("a.com");
        set_forwarded_headers(&mut req, Some(&ip), false, Some(&host)).unwrap();
        assert_eq!(
            header(&req, "x-forwarded-for").as_deref(),
            Some("1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.5")
        );
        assert_eq!(req.headers.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(header(&req, "x-real-ip").as_deref(), Some("10.0.0.5"));
        assert_eq!(header(&req, "x-forwarded-proto").as_deref(), Some("http"));
        assert_eq!(header(&req, "x-forwarded-host").as_deref(), Some("a.com"));
    }

    #[test]
    fn addresses_read_as_display_writes_them() {
        let mut samples: Vec<IpAddr> = ["0.0.0.0", "255.255.255.255", "10.0.0.5", "1.20.100.9"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        // A spread of IPv4 addresses (every octet width), and IPv6 through Display.
        samples.extend(
            (0..u32::MAX)
                .step_by(104_729)
                .map(|n| IpAddr::from(n.to_be_bytes())),
        );
        samples.push("2001:db8::1".parse().unwrap());
        for ip in samples {
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }

    #[test]
    fn the_names_are_written_as_they_are_parsed() {
        for field in [&XFF, &REAL_IP, &PROTO, &HOST] {
            assert!(field
                .name
                .as_str()
                .eq_ignore_ascii_case(std::str::from_utf8(&field.written).unwrap()));
        }
    }

    #[test]
    fn first_hop_starts_the_chain() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        let ip = ip_value("::1".parse().unwrap()).unwrap();
        set_forwarded_headers(&mut req, Some(&ip), true, None).unwrap();
        assert_eq!(header(&req, "x-forwarded-for").as_deref(), Some("::1"));
        assert_eq!(header(&req, "x-forwarded-proto").as_deref(), Some("https"));
        assert_eq!(header(&req, "x-forwarded-host"), None);
    }
}
