//! A browser as the benchmark needs it: its own cookies over one shared connection pool (a
//! reqwest cookie store per browser would mean a client, and its TLS set-up, per login), no
//! redirects followed, and the few things read off Sesam's pages.

use anyhow::{bail, Context};
use reqwest::header::{HeaderMap, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Client, Response, StatusCode};

pub struct Browser {
    http: Client,
    base: String,
    cookies: Vec<(String, String)>,
    /// Requests sent since the last `take_sent`.
    sent: u64,
}

pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> Option<&str> {
        self.headers.get(LOCATION).and_then(|v| v.to_str().ok())
    }

    /// The redirect target, or an error naming what came instead.
    pub fn redirect(&self) -> anyhow::Result<&str> {
        match (self.status.is_redirection(), self.location()) {
            (true, Some(to)) => Ok(to),
            _ => bail!(
                "expected a redirect, got {} {}",
                self.status,
                snippet(&self.body)
            ),
        }
    }

    /// The value of the attribute that follows `marker` (which ends with `="`).
    pub fn attr_after(&self, marker: &str) -> anyhow::Result<&str> {
        let start = self.body.find(marker).with_context(|| {
            format!(
                "no {marker} on a {} page: {}",
                self.status,
                snippet(&self.body)
            )
        })? + marker.len();
        let end = self.body[start..]
            .find('"')
            .context("unterminated attribute")?
            + start;
        Ok(&self.body[start..end])
    }

    /// The hidden CSRF field of the page's form.
    pub fn csrf(&self) -> anyhow::Result<&str> {
        self.attr_after("name=\"csrf\" value=\"")
    }

    /// The two-digit code on the wait page.
    pub fn code(&self) -> anyhow::Result<String> {
        let marker = "id=\"code\" aria-describedby=\"instruction\">";
        let start = self
            .body
            .find(marker)
            .with_context(|| format!("no code on the wait page: {}", snippet(&self.body)))?
            + marker.len();
        self.body
            .get(start..start + 2)
            .map(str::to_owned)
            .context("short code")
    }
}

fn snippet(body: &str) -> String {
    body.chars().take(200).collect()
}

impl Browser {
    pub fn new(http: Client, base: &str) -> Browser {
        Browser {
            http,
            base: base.to_owned(),
            cookies: Vec::new(),
            sent: 0,
        }
    }

    /// The requests this browser sent since the last call.
    pub fn take_sent(&mut self) -> u64 {
        std::mem::take(&mut self.sent)
    }

    pub async fn get(&mut self, path: &str) -> anyhow::Result<Page> {
        let response = self.send_get(path).await?;
        self.page(response).await
    }

    /// A GET whose body is left unread (an event stream).
    pub async fn send_get(&mut self, path: &str) -> anyhow::Result<Response> {
        let request = self.http.get(format!("{}{path}", self.base));
        self.sent += 1;
        let response = self.with_cookies(request).send().await?;
        self.keep_cookies(&response);
        Ok(response)
    }

    pub async fn post_form(&mut self, path: &str, fields: &[(&str, &str)]) -> anyhow::Result<Page> {
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(fields)?);
        self.sent += 1;
        let response = self.with_cookies(request).send().await?;
        self.keep_cookies(&response);
        self.page(response).await
    }

    fn with_cookies(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        if self.cookies.is_empty() {
            return request;
        }
        let header = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        request.header(COOKIE, header)
    }

    fn keep_cookies(&mut self, response: &Response) {
        for value in response.headers().get_all(SET_COOKIE) {
            let Some((name, rest)) = value.to_str().ok().and_then(|v| v.split_once('=')) else {
                continue;
            };
            let value = rest.split(';').next().unwrap_or("");
            let deleted = value.is_empty() || rest.contains("Max-Age=0");
            self.cookies.retain(|(k, _)| k != name);
            if !deleted {
                self.cookies.push((name.to_owned(), value.to_owned()));
            }
        }
    }

    async fn page(&self, response: Response) -> anyhow::Result<Page> {
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.text().await?;
        if status.is_server_error() || status.is_client_error() {
            bail!("{status}: {}", snippet(&body));
        }
        Ok(Page {
            status,
            headers,
            body,
        })
    }
}

/// Reads a Server-Sent Events stream until it reports `status` (true) or ends (false).
pub async fn wait_for_status(mut events: Response, status: &str) -> anyhow::Result<bool> {
    let wanted = format!("\"status\":\"{status}\"");
    let mut seen = String::new();
    while let Some(chunk) = events.chunk().await? {
        seen.push_str(&String::from_utf8_lossy(&chunk));
        if seen.contains(&wanted) {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_code_and_the_csrf_field() {
        let page = Page {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: r#"<input name="csrf" value="abc"><p id="code" aria-describedby="instruction">42</p>"#
                .into(),
        };
        assert_eq!(page.csrf().unwrap(), "abc");
        assert_eq!(page.code().unwrap(), "42");
        assert!(page.redirect().is_err());
    }
}
