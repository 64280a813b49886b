//! The X-Forwarded-* and X-Real-IP headers sent upstream.

use std::net::IpAddr;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use pingora::{ErrorType, OrErr, Result};

use super::outgoing::Outgoing;

/// The names, parsed once, and as they go on the wire (Pingora's path sends them as written;
/// the direct path's client title-cases every name, which gives the same).
const XFF: (HeaderName, &str) = (
    HeaderName::from_static("x-forwarded-for"),
    "X-Forwarded-For",
);
const REAL_IP: (HeaderName, &str) = (HeaderName::from_static("x-real-ip"), "X-Real-IP");
const PROTO: (HeaderName, &str) = (
    HeaderName::from_static("x-forwarded-proto"),
    "X-Forwarded-Proto",
);
const HOST: (HeaderName, &str) = (
    HeaderName::from_static("x-forwarded-host"),
    "X-Forwarded-Host",
);

/// Appends the client to any existing `X-Forwarded-For` chain and sets `X-Forwarded-Proto`,
/// `X-Forwarded-Host` and `X-Real-IP`, replacing what the client sent for those three.
pub fn set_forwarded_headers(
    req: &mut impl Outgoing,
    client: Option<IpAddr>,
    https: bool,
    host: Option<&str>,
) -> Result<()> {
    if let Some(ip) = client {
        let ip = ip_text(ip);
        let chain = {
            let mut previous = req
                .headers()
                .get_all(&XFF.0)
                .iter()
                .filter_map(|v| v.to_str().ok());
            match previous.next() {
                None => ip.clone(),
                Some(first) => {
                    let mut chain = first.to_string();
                    for more in previous {
                        chain.push_str(", ");
                        chain.push_str(more);
                    }
                    chain.push_str(", ");
                    chain.push_str(&ip);
                    chain
                }
            }
        };
        set(req, &XFF, value(chain)?)?;
        set(req, &REAL_IP, value(ip)?)?;
    }
    let proto = HeaderValue::from_static(if https { "https" } else { "http" });
    set(req, &PROTO, proto)?;
    if let Some(host) = host {
        set(req, &HOST, value(host)?)?;
    }
    Ok(())
}

fn set(req: &mut impl Outgoing, name: &(HeaderName, &'static str), v: HeaderValue) -> Result<()> {
    req.set(&name.0, Bytes::from_static(name.1.as_bytes()), v)
}

/// A header value from text the request or the socket gave.
fn value<T>(text: T) -> Result<HeaderValue>
where
    HeaderValue: TryFrom<T, Error = http::header::InvalidHeaderValue>,
{
    HeaderValue::try_from(text).or_err(ErrorType::InvalidHTTPHeader, "forwarding header value")
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
        set_forwarded_headers(
            &mut req,
            Some("10.0.0.5".parse().unwrap()),
            false,
            Some("a.com"),
        )
        .unwrap();
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
    fn first_hop_starts_the_chain() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        set_forwarded_headers(&mut req, Some("::1".parse().unwrap()), true, None).unwrap();
        assert_eq!(header(&req, "x-forwarded-for").as_deref(), Some("::1"));
        assert_eq!(header(&req, "x-forwarded-proto").as_deref(), Some("https"));
        assert_eq!(header(&req, "x-forwarded-host"), None);
    }
}
