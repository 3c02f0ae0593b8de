//! Connecting to NATS with the credentials of its URL: async-nats 0.51 reads no `user:password@`
//! (nor a `token@`) from the URL it is given, so a server with users (`nats/nats.conf`, README
//! "Events on NATS JetStream") refused the service as an anonymous user. The credentials are
//! taken from the URL here, percent-decoded, and the servers are given without them.

use async_nats::ConnectOptions;

/// Connect options carrying the URL's credentials, and the URL(s) without them. A URL may list
/// several servers separated by commas; credentials are taken from the first that has any.
pub fn options(url: &str) -> (ConnectOptions, String) {
    let mut options = ConnectOptions::new();
    let mut servers = Vec::new();
    let mut found = false;
    for server in url.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match url::Url::parse(server) {
            Ok(mut parsed) if !parsed.username().is_empty() => {
                let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
                let user = decode(parsed.username());
                let password = parsed.password().map(decode);
                if !found {
                    options = match password {
                        Some(password) => options.user_and_password(user, password),
                        None => options.token(user),
                    };
                    found = true;
                }
                let _ = parsed.set_username("");
                let _ = parsed.set_password(None);
                servers.push(parsed.to_string().trim_end_matches('/').to_string());
            }
            _ => servers.push(server.to_string()),
        }
    }
    (options, servers.join(","))
}

#[cfg(test)]
mod tests {
    use super::options;

    #[test]
    fn credentials_leave_the_url() {
        assert_eq!(options("nats://careledger:p%40ss@nats:4222").1, "nats://nats:4222");
        assert_eq!(options("nats://tok@127.0.0.1:4222").1, "nats://127.0.0.1:4222");
        assert_eq!(options("nats://127.0.0.1:4222").1, "nats://127.0.0.1:4222");
        assert_eq!(options("nats://a:b@h1:4222, nats://h2:4222").1, "nats://h1:4222,nats://h2:4222");
    }
}
