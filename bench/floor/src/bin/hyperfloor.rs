//! The least a hyper proxy does: `hyperfloor LISTEN ORIGIN` serves HTTP/1.1 and sends
//! every request to ORIGIN over hyper-util's pooled keep-alive client, unchanged but
//! for its URI. No admission, no header rewriting, no metrics.
#![forbid(unsafe_code)]

use hyper::body::Incoming;
use hyper::Request;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (listen, origin) = (args.next().expect("LISTEN"), args.next().expect("ORIGIN"));
    let origin: &'static str = origin.leak();
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<_, Incoming> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1024)
        .build(connector);
    let listener = tokio::net::TcpListener::bind(listen).await.expect("bind");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let client = client.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                let client = client.clone();
                async move {
                    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
                    *req.uri_mut() = format!("http://{origin}{pq}").parse().expect("uri");
                    client.request(req).await
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
