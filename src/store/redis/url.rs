//! `[store] redis`: `redis://[user:password@]host:port/db`, parsed once at
//! start-up so a typo is a config error naming the key, not a reconnect loop.

use std::fmt;

/// Where the Redis server is and how to log in to it.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    /// A host name or an IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// `AUTH user password` when both are given, `AUTH password` with only a
    /// password (Redis before 6, or the `default` user).
    pub username: Option<String>,
    pub password: Option<String>,
    /// `SELECT db` after connecting.
    pub db: u32,
}

/// What is wrong with a URL, in words a config error can quote.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("it does not start with redis:// (rediss:// and unix sockets are not supported)")]
    Scheme,
    #[error("it has no host")]
    NoHost,
    #[error("the port \"{0}\" is not a number from 1 to 65535")]
    Port(String),
    #[error("the database \"{0}\" is not a number")]
    Db(String),
    #[error("\"{0}\" is not valid percent-encoding")]
    Encoding(String),
}

impl RedisUrl {
    pub fn parse(url: &str) -> Result<RedisUrl, UrlError> {
        let rest = url.strip_prefix("redis://").ok_or(UrlError::Scheme)?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (credentials, address) = match authority.rsplit_once('@') {
            Some((c, a)) => (Some(c), a),
            None => (None, authority),
        };
        let (username, password) = match credentials {
            None => (None, None),
            Some(c) => {
                let (user, password) = c.split_once(':').unwrap_or(("", c));
                let user = decode(user)?;
                let password = decode(password)?;
                (
                    Some(user).filter(|u| !u.is_empty()),
                    Some(password).filter(|p| !p.is_empty()),
                )
            }
        };
        let (host, port) = split_host_port(address)?;
        if host.is_empty() {
            return Err(UrlError::NoHost);
        }
        let db = match path {
            "" => 0,
            db => db.parse().map_err(|_| UrlError::Db(db.to_owned()))?,
        };
        Ok(RedisUrl {
            host: host.to_owned(),
            port,
            username,
            password,
            db,
        })
    }

    /// `host:port`, for connecting.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// `host:port`, `[v6]:port` or a bare host (port 6379).
fn split_host_port(address: &str) -> Result<(&str, u16), UrlError> {
    let (host, port) = if let Some(v6) = address.strip_prefix('[') {
        match v6.split_once(']') {
            Some((host, rest)) => (host, rest.strip_prefix(':')),
            None => return Err(UrlError::NoHost),
        }
    } else {
        match address.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (address, None),
        }
    };
    let port = match port {
        None => 6379,
        Some(p) => p
            .parse()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| UrlError::Port(p.to_owned()))?,
    };
    Ok((host, port))
}

fn decode(s: &str) -> Result<String, UrlError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .ok_or_else(|| UrlError::Encoding(s.to_owned()))?;
            let byte = u8::from_str_radix(hex, 16).map_err(|_| UrlError::Encoding(s.to_owned()))?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| UrlError::Encoding(s.to_owned()))
}

/// Never prints the password: the URL ends up in logs and errors.
impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "redis://")?;
        if let Some(user) = &self.username {
            write!(f, "{user}")?;
        }
        if self.password.is_some() {
            write!(f, ":***")?;
        }
        if self.username.is_some() || self.password.is_some() {
            write!(f, "@")?;
        }
        write!(f, "{}/{}", self.address(), self.db)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_and_short_forms() {
        let u = RedisUrl::parse("redis://alice:s%40cret@10.0.0.1:6380/3").unwrap();
        assert_eq!(u.host, "10.0.0.1");
        assert_eq!(u.port, 6380);
        assert_eq!(u.username.as_deref(), Some("alice"));
        assert_eq!(u.password.as_deref(), Some("s@cret"));
        assert_eq!(u.db, 3);
        assert_eq!(format!("{u:?}"), "redis://alice:***@10.0.0.1:6380/3");

        let u = RedisUrl::parse("redis://localhost").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.db), ("localhost", 6379, 0));
        assert_eq!((u.username, u.password), (None, None));

        let u = RedisUrl::parse("redis://:pw@[::1]:7000/").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 7000));
        assert_eq!(u.password.as_deref(), Some("pw"));
        assert_eq!(u.username, None);
        assert_eq!(u.address(), "[::1]:7000");
    }

    #[test]
    fn mistakes_are_named() {
        assert_eq!(RedisUrl::parse("127.0.0.1:6379"), Err(UrlError::Scheme));
        assert_eq!(RedisUrl::parse("redis://"), Err(UrlError::NoHost));
        assert_eq!(
            RedisUrl::parse("redis://h:0"),
            Err(UrlError::Port("0".into()))
        );
        assert_eq!(
            RedisUrl::parse("redis://h:6379/x"),
            Err(UrlError::Db("x".into()))
        );
        assert_eq!(
            RedisUrl::parse("redis://u:%zz@h"),
            Err(UrlError::Encoding("%zz".into()))
        );
    }
}
