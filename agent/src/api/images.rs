//! `orc.container.v1.Images`.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::error::AgentError;
use crate::images::{load, pull};
use crate::runtime::manager::Runtime;
use orc_proto::container::images_server::Images;
use orc_proto::container::*;

pub struct ImagesService {
    runtime: Arc<Runtime>,
}

impl ImagesService {
    pub fn new(runtime: Arc<Runtime>) -> Self {
        Self { runtime }
    }
}

type Streamed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl Images for ImagesService {
    type PullStream = Streamed<PullProgress>;

    async fn pull(&self, req: Request<PullRequest>) -> Result<Response<Self::PullStream>, Status> {
        let req = req.into_inner();
        super::audit::target(&req.reference);
        tracing::info!(reference = %req.reference, "pull requested");
        crate::images::reference::parse(&req.reference)?;
        let (tx, rx) = mpsc::channel(64);
        let images = self.runtime.images.clone();
        tokio::spawn(async move {
            let (ptx, mut prx) = mpsc::channel(64);
            let forward = {
                let tx = tx.clone();
                tokio::spawn(async move {
                    while let Some(p) = prx.recv().await {
                        let _ = tx.send(Ok(p)).await;
                    }
                })
            };
            let result = pull::pull(&images, &req.reference, req.auth.as_ref(), ptx).await;
            let _ = forward.await;
            let msg = match result {
                Ok(image) => Ok(PullProgress { event: Some(pull_progress::Event::Image(image.to_proto())) }),
                Err(e) => {
                    tracing::warn!(reference = %req.reference, error = %e, "pull failed");
                    Err(Status::from(e))
                }
            };
            let _ = tx.send(msg).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn load(&self, req: Request<Streaming<LoadChunk>>) -> Result<Response<LoadResponse>, Status> {
        let mut input = req.into_inner();
        let images = self.runtime.images.clone();
        let path = images.tmp_dir().join(format!("archive-{:016x}.tar", rand::random::<u64>()));
        let mut name = None;
        let mut size = 0u64;
        let received: Result<(), Status> = async {
            let mut file = tokio::fs::File::create(&path).await.map_err(|e| AgentError::io(&path, e))?;
            while let Some(chunk) = input.message().await? {
                if name.is_none() {
                    name = Some(chunk.name.clone());
                }
                size += chunk.data.len() as u64;
                file.write_all(&chunk.data).await.map_err(|e| AgentError::io(&path, e))?;
            }
            file.flush().await.map_err(|e| AgentError::io(&path, e))?;
            Ok(())
        }
        .await;
        if let Err(e) = received {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(e);
        }
        tracing::info!(bytes = size, "image archive received");
        let result = load::load(&images, path.clone(), name.unwrap_or_default()).await;
        let _ = tokio::fs::remove_file(&path).await;
        let records = result?;
        for r in &records {
            tracing::info!(image = %r.name, id = %r.id, "image loaded");
        }
        Ok(Response::new(LoadResponse { images: records.iter().map(|r| r.to_proto()).collect() }))
    }

    async fn list(&self, _: Request<ListImagesRequest>) -> Result<Response<ListImagesResponse>, Status> {
        let images = self.runtime.images.list().await?;
        Ok(Response::new(ListImagesResponse { images: images.iter().map(|i| i.to_proto()).collect() }))
    }

    async fn remove(&self, req: Request<RemoveImageRequest>) -> Result<Response<RemoveImageResponse>, Status> {
        let name = req.into_inner().name;
        super::audit::target(&name);
        let (users, layers, ids) = self.runtime.in_use().await;
        let untagged = self.runtime.images.remove(&name, &users).await?;
        let reclaimed = self.runtime.images.gc(&layers, &ids).await?;
        tracing::info!(image = %name, ?untagged, reclaimed, "image removed");
        Ok(Response::new(RemoveImageResponse { untagged, reclaimed }))
    }
}
