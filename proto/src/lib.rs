//! The `fedrisk.v1` wire contract: generated gRPC messages, clients and servers, plus the
//! few constants both ends must agree on.
//!
//! Use [`participant_server`], [`operator_server`], [`participant_client`] and
//! [`operator_client`] rather than the raw generated constructors: they set the message
//! size limits on both ends, which tonic otherwise defaults to 4 MiB for decoding.

/// Generated code for package `fedrisk.v1`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("fedrisk.v1");
}

use tonic::codegen::{Body, Bytes, StdError};
pub use v1::operator_client::OperatorClient;
pub use v1::operator_server::{Operator, OperatorServer};
pub use v1::participant_client::ParticipantClient;
pub use v1::participant_server::{Participant, ParticipantServer};

/// Version of this contract, checked in `JoinRequest`. Bump on any incompatible change
/// (together with the package name `fedrisk.v1` -> `fedrisk.v2` for breaking ones).
pub const PROTOCOL_VERSION: u32 = 4;

/// Largest part of a secagg delivery or certificate list on a task stream, in bytes (see
/// `SecAggDelivery`). With [`SmallBufferCodec`] yielding after [`YIELD_BYTES`], a stream's
/// encode buffer stays under `DELIVERY_PART + YIELD_BYTES` whatever the session's size.
pub const DELIVERY_PART: usize = 6 * 1024;

/// Bytes the encoder gathers before handing them to HTTP/2 (tonic's default is 32 KiB).
pub const YIELD_BYTES: usize = 8 * 1024;

/// The prost codec with small encode buffers. Why: a server-streaming response keeps its
/// encode buffer at the largest size it ever reached, and the coordinator holds one task
/// stream per agent: at n = 200 the default settings kept about 13 MB of buffers alive.
#[derive(Debug, Clone, Copy)]
pub struct SmallBufferCodec<T, U>(std::marker::PhantomData<(T, U)>);

impl<T, U> Default for SmallBufferCodec<T, U> {
    fn default() -> Self {
        SmallBufferCodec(std::marker::PhantomData)
    }
}

impl<T, U> tonic::codec::Codec for SmallBufferCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = <tonic_prost::ProstCodec<T, U> as tonic::codec::Codec>::Encoder;
    type Decoder = <tonic_prost::ProstCodec<T, U> as tonic::codec::Codec>::Decoder;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstCodec::<T, U>::raw_encoder(tonic::codec::BufferSettings::new(
            YIELD_BYTES,
            YIELD_BYTES,
        ))
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic::codec::Codec::decoder(&mut tonic_prost::ProstCodec::<T, U>::default())
    }
}

/// Largest gRPC message accepted or sent by either end, in bytes.
///
/// Why 16 MiB: the largest messages are masked inputs, one 8-byte word per slot, and agents
/// accept at most 2^20 slots by default (`TaskLimits`): 8 MiB, e.g. a Newton round's gradient
/// and Hessian triangle for about 1,400 features. Key lists and share deliveries grow with the
/// number of participants but stay far smaller. Together with the coordinator's limit of
/// requests in flight per connection, this bounds what one authenticated peer can make the
/// other side allocate (tonic's default is 4 MiB).
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Length of a secagg session id: 32 random bytes, fresh for every round attempt.
pub const SESSION_ID_LEN: usize = 32;

/// The participant service with both size limits set to [`MAX_MESSAGE_BYTES`].
pub fn participant_server<T: Participant>(service: T) -> ParticipantServer<T> {
    ParticipantServer::new(service)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// The operator service with both size limits set to [`MAX_MESSAGE_BYTES`].
pub fn operator_server<T: Operator>(service: T) -> OperatorServer<T> {
    OperatorServer::new(service)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// A participant client with both size limits set to [`MAX_MESSAGE_BYTES`].
pub fn participant_client<T>(transport: T) -> ParticipantClient<T>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<StdError>,
    T::ResponseBody: Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as Body>::Error: Into<StdError> + Send,
{
    ParticipantClient::new(transport)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// An operator client with both size limits set to [`MAX_MESSAGE_BYTES`].
pub fn operator_client<T>(transport: T) -> OperatorClient<T>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<StdError>,
    T::ResponseBody: Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as Body>::Error: Into<StdError> + Send,
{
    OperatorClient::new(transport)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

#[cfg(test)]
mod tests {
    use super::v1::{ComputeTask, SecAggDelivery, SecAggStage, Task, task};
    use super::*;
    use prost::Message;

    #[test]
    fn task_round_trips() {
        let task = Task {
            seq: 7,
            job_id: 3,
            round: 2,
            session_id: vec![0xab; SESSION_ID_LEN],
            kind: Some(task::Kind::Secagg(SecAggDelivery {
                stage: SecAggStage::ShareKeys as i32,
                payload: vec![1, 2, 3, 255].into(),
                more: true,
            })),
        };
        let bytes = task.encode_to_vec();
        let back = Task::decode(bytes.as_slice()).expect("decode");
        assert_eq!(back, task);
        assert_eq!(back.round, 2);
        assert_eq!(back.session_id, vec![0xab; SESSION_ID_LEN]);

        let compute = Task {
            kind: Some(task::Kind::Compute(ComputeTask {
                task: b"{}".to_vec().into(),
                secagg: None,
                job_spec: "ab".repeat(32),
                lineage: vec!["cd".repeat(32)],
            })),
            ..task
        };
        let back = Task::decode(compute.encode_to_vec().as_slice()).expect("decode");
        assert!(
            matches!(back.kind, Some(task::Kind::Compute(t)) if t.task.as_ref() == b"{}" && t.lineage.len() == 1)
        );
    }

    #[test]
    fn unknown_stage_is_preserved_as_integer() {
        // A newer peer may send a stage this build doesn't know; it must not fail decoding
        // so the receiver can answer with a clear error instead of a codec failure.
        let up = v1::SecAggUpload {
            stage: 99,
            ..Default::default()
        };
        let back = v1::SecAggUpload::decode(up.encode_to_vec().as_slice()).expect("decode");
        assert_eq!(back.stage, 99);
        assert!(SecAggStage::try_from(back.stage).is_err());
    }
}
