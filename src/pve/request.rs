//! Sending one API request: the attempt (headers, timeout, the body read with a cap
//! and checked for being cut off) and the repeats around it ([`super::retry`]).

use super::client::{whole_seconds, Client, MAX_BODY_BYTES};
use super::error::ApiError;
use super::form::encode_pairs;
use super::form::Params;
use super::retry::{may_retry, Retry};
use super::transport::{
    announced_length, interpret, read_body, transport_error, Answer, BodyError,
};
use crate::log;
use minreq::Method;
use serde::de::DeserializeOwned;
use std::time::{Duration, Instant};

/// What decodes an answer for [`Client::request`]: its request label and the answer.
type Decode<'a> = &'a mut dyn FnMut(&str, &Answer<'_>) -> Result<(), ApiError>;

impl Client {
    /// The only place the secret is read: the header value, built per request and
    /// dropped with it.
    fn auth_header(&self) -> String {
        format!("PVEAPIToken={}={}", self.token_id, self.secret.expose())
    }

    /// `e`, the error an answer gave, unless the answer repeats the token secret (a
    /// gateway that echoes the request's headers): then nothing of it is quoted. A 2xx
    /// so answered stays undecodable (for a mutation, an unknown outcome), another
    /// status keeps its class, each with a message of its own. Only an answer that
    /// gives an error is searched: a good one is not quoted anywhere.
    fn unquoted(&self, e: ApiError, a: &Answer<'_>, headers: &[(String, String)]) -> ApiError {
        let repeated = |t: &str| self.secret.is_repeated_in(t.as_bytes());
        if !(self.secret.is_repeated_in(a.body)
            || repeated(a.reason)
            || headers.iter().any(|(k, v)| repeated(k) || repeated(v)))
        {
            return e;
        }
        const NOT_SHOWN: &str = "the answer repeats the API token secret; not shown";
        match e {
            ApiError::Http { status, .. } => ApiError::Http {
                status,
                message: NOT_SHOWN.into(),
                errors: Default::default(),
            },
            ApiError::Decode { request, .. } => ApiError::Decode {
                request,
                detail: NOT_SHOWN.into(),
            },
            // The others quote nothing of the answer.
            other => other,
        }
    }

    /// Sends a request, repeating it as `retry` and [`may_retry`] allow, and returns
    /// the answer's `data` as a `T`, decoded straight from the body's bytes
    /// ([`super::envelope`]). Each repeat is logged at debug level.
    pub(super) fn request<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        form: Option<&Params>,
        timeout: Duration,
        retry: Retry,
    ) -> Result<T, ApiError> {
        // Only the decoding is generic: the rest is one piece of code for every type
        // (the binary carries it once, not once per answer type).
        let mut data = None;
        let mut decode = |label: &str, answer: &Answer<'_>| {
            data = Some(interpret::<T>(label, answer)?);
            Ok(())
        };
        self.send(method, path, query, form, timeout, retry, &mut decode)?;
        Ok(data.expect("a request that succeeded has decoded its answer"))
    }

    /// [`Client::request`] with the answer handed to `decode`, which keeps what it
    /// decodes or says why it cannot (an error that may be repeated like any other).
    #[allow(clippy::too_many_arguments)]
    fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        form: Option<&Params>,
        timeout: Duration,
        retry: Retry,
        decode: Decode<'_>,
    ) -> Result<(), ApiError> {
        let mut target = path.to_string();
        if !query.is_empty() {
            target.push('?');
            target.push_str(&encode_pairs(query.iter().map(|(k, v)| (*k, v.as_str()))));
        }
        let mut attempt = 1;
        loop {
            let err = match self.attempt(&method, path, &target, form, timeout, &mut *decode) {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if attempt >= retry.tries || !may_retry(&method, &err) || self.cancel.is_cancelled() {
                return Err(err);
            }
            attempt += 1;
            let pause = {
                let mut rng = self.jitter.lock().unwrap_or_else(|p| p.into_inner());
                retry.backoff(attempt, &mut rng)
            };
            log::debug(
                "pve request failed, retrying",
                &[
                    ("method", &method),
                    ("path", &target),
                    ("attempt", &attempt),
                    ("pause_ms", &pause.as_millis()),
                    ("error", &log::Chain(&err)),
                ],
            );
            if self.cancel.wait(pause) {
                return Err(err);
            }
        }
    }

    /// Sends one request and hands the answer to `decode`. Logged at debug level with
    /// method, path, status and duration; never the header.
    fn attempt(
        &self,
        method: &Method,
        path: &str,
        target: &str,
        form: Option<&Params>,
        timeout: Duration,
        decode: Decode<'_>,
    ) -> Result<(), ApiError> {
        let label = format!("{method} {path}");
        let url = format!("{}/api2/json{target}", self.base.origin);
        let mut req = minreq::Request::new(method.clone(), url)
            .with_header("Authorization", self.auth_header())
            .with_header("Accept", "application/json")
            .with_timeout(whole_seconds(timeout))
            .with_follow_redirects(false);
        if let Some(params) = form {
            req = req
                .with_header("Content-Type", "application/x-www-form-urlencoded")
                .with_body(encode_pairs(params));
        }
        if self.base.https {
            super::tls::note_https_use();
        }
        let started = Instant::now();
        let failed = |err: ApiError| {
            log::debug(
                "pve request failed",
                &[
                    ("method", method),
                    ("path", &target),
                    ("ms", &started.elapsed().as_millis()),
                    ("error", &log::Chain(&err)),
                ],
            );
            Err(err)
        };
        // Lazily, so that the body is read with a cap and its length checked.
        let mut resp = match req.send_lazy() {
            Ok(resp) => resp,
            Err(e) => return failed(transport_error(&label, &e)),
        };
        let status = resp.status_code;
        // As minreq's own reader: these statuses have no body.
        let body = if matches!(status, 204 | 304) {
            Vec::new()
        } else {
            let expected = announced_length(&resp.headers);
            match read_body(&mut resp, expected, MAX_BODY_BYTES) {
                Ok(body) => body,
                Err(BodyError::TooLarge) => {
                    return failed(ApiError::TooLarge {
                        request: label,
                        status,
                        limit: MAX_BODY_BYTES,
                    })
                }
                Err(BodyError::CutOff(detail)) => {
                    return failed(ApiError::Truncated {
                        request: label,
                        status,
                        detail,
                    })
                }
            }
        };
        log::debug(
            "pve request",
            &[
                ("method", method),
                ("path", &target),
                ("status", &status),
                ("ms", &started.elapsed().as_millis()),
            ],
        );
        let answer = Answer {
            status,
            reason: &resp.reason_phrase,
            has_headers: !resp.headers.is_empty(),
            body: &body,
        };
        decode(&label, &answer).map_err(|e| self.unquoted(e, &answer, &resp.headers))
    }
}
