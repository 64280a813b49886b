//! A tiny HTTP backend for trying Aralez out: `cargo run --example demo_backend -- 8000 8001`.
//! Each listener answers every request with its port, the path and the headers it received;
//! `/ws` is a WebSocket echo.

use axum::extract::ws::{WebSocket, WebSocketUpgrade};
use axum::extract::Request;
use axum::routing::get;
use axum::Router;

async fn echo(mut socket: WebSocket) {
    while let Some(Ok(msg)) = socket.recv().await {
        if socket.send(msg).await.is_err() {
            return;
        }
    }
}

async fn serve(port: u16) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let app = Router::new()
        .route(
            "/ws",
            get(|ws: WebSocketUpgrade| async { ws.on_upgrade(echo) }),
        )
        .fallback(move |req: Request| async move {
            let mut body = format!(
                "hello from demo backend 127.0.0.1:{port}\n{} {}\n",
                req.method(),
                req.uri()
            );
            for (name, value) in req.headers() {
                body.push_str(&format!(
                    "{name}: {}\n",
                    value.to_str().unwrap_or("<binary>")
                ));
            }
            body
        });
    println!("demo backend listening on 127.0.0.1:{port}");
    axum::serve(listener, app).await
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let ports: Vec<u16> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let ports = if ports.is_empty() { vec![8000] } else { ports };
    let servers: Vec<_> = ports.into_iter().map(|p| tokio::spawn(serve(p))).collect();
    for s in servers {
        if let Ok(Err(e)) = s.await {
            eprintln!("demo backend: {e}");
            std::process::exit(1);
        }
    }
    Ok(())
}
