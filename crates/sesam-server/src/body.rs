//! Request bodies read with a size cap: the web forms, SCIM and the app API.
//!
//! A body over the cap is answered 413, and the rest of it is read and thrown away (up to
//! [`DRAIN_BYTES`]) before the answer goes out. Without that, the server would close the
//! connection with unread bytes in it; the kernel then resets the connection, and a client
//! still sending its body loses the 413 and sees a broken connection instead. Past the drain
//! limit the connection is closed: the 413 carries `Connection: close` (see `web::router`).

use axum::body::{Body, Bytes};
use futures_util::StreamExt;

/// How much of an oversized body is read and discarded so the client gets its 413.
pub const DRAIN_BYTES: usize = 8 * 1024 * 1024;

/// Why a body could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    /// Longer than the cap.
    TooLarge,
    /// The connection broke or the body timed out.
    Broken,
}

/// The whole body if it is at most `max` bytes.
pub async fn read_capped(body: Body, max: usize) -> Result<Bytes, BodyError> {
    let mut stream = body.into_data_stream();
    let mut buf: Vec<u8> = Vec::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| BodyError::Broken)?;
        seen = seen.saturating_add(chunk.len());
        if seen > max {
            // Over the cap: keep reading (and dropping) up to the drain limit.
            while seen <= DRAIN_BYTES {
                match stream.next().await {
                    Some(Ok(more)) => seen = seen.saturating_add(more.len()),
                    _ => break,
                }
            }
            return Err(BodyError::TooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunked(chunks: Vec<Vec<u8>>) -> Body {
        let stream = futures_util::stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>));
        Body::from_stream(stream)
    }

    #[tokio::test]
    async fn a_body_up_to_the_cap_is_read_whole() {
        let body = chunked(vec![b"abc".to_vec(), b"def".to_vec()]);
        assert_eq!(read_capped(body, 6).await.unwrap(), Bytes::from("abcdef"));
        assert_eq!(read_capped(Body::empty(), 0).await.unwrap(), Bytes::new());
    }

    #[tokio::test]
    async fn a_body_over_the_cap_is_refused_after_the_chunk_that_crosses_it() {
        let body = chunked(vec![b"abc".to_vec(), b"defg".to_vec(), b"h".to_vec()]);
        assert_eq!(read_capped(body, 6).await, Err(BodyError::TooLarge));
    }

    #[tokio::test]
    async fn the_rest_of_an_oversized_body_is_drained_up_to_the_limit() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        let read = Arc::new(AtomicUsize::new(0));
        let counter = read.clone();
        // 16 MiB in 64 KiB chunks, against a cap of 10 bytes.
        let stream = futures_util::stream::iter((0..256).map(|_| vec![b'a'; 64 * 1024]))
            .inspect(move |c| {
                counter.fetch_add(c.len(), Ordering::SeqCst);
            })
            .map(Ok::<_, std::io::Error>);
        let body = Body::from_stream(stream);
        assert_eq!(read_capped(body, 10).await, Err(BodyError::TooLarge));
        let read = read.load(Ordering::SeqCst);
        assert!(read > DRAIN_BYTES, "drained only {read} bytes");
        assert!(read < 16 * 1024 * 1024, "read all {read} bytes");
    }

    #[tokio::test]
    async fn a_broken_body_is_not_called_too_large() {
        let stream = futures_util::stream::iter(vec![
            Ok(b"abc".to_vec()),
            Err(std::io::Error::other("reset")),
        ]);
        let body = Body::from_stream(stream);
        assert_eq!(read_capped(body, 100).await, Err(BodyError::Broken));
    }
}
