//! Encoding between Rust values, postcard bytes and JSON, with errors that
//! name the method, the parameter and the type a caller should have sent.

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::{CallOptions, DispatchError, MethodInfo, Transport};
use crate::CallError;

/// A service's method table plus its JSON mapping, usable without an
/// implementation at hand: a CLI or gateway turns `("incr", {"key":"a"})`
/// into a method and postcard bytes, sends them, and turns the reply bytes
/// back into JSON. Generated as the unit struct `<Trait>Codec`.
pub trait ServiceCodec: Send + Sync + 'static {
    fn name(&self) -> &'static str;

    /// The method table; `methods()[i].id == i`.
    fn methods(&self) -> &'static [MethodInfo];

    /// Decodes a JSON object of named arguments for `method` and encodes
    /// them as the postcard argument tuple.
    fn encode_json_args(&self, method: &MethodInfo, args: Value) -> Result<Bytes, DispatchError>;

    /// Decodes a postcard reply of `method` and re-encodes it as JSON.
    fn decode_json_reply(&self, method: &MethodInfo, reply: &[u8]) -> Result<Value, DispatchError>;

    /// Looks a method up by name.
    fn method(&self, name: &str) -> Result<&'static MethodInfo, DispatchError> {
        method_by_name(self.methods(), self.name(), name)
    }
}

/// A JSON call's reply as a service hands it to the server: JSON already,
/// or still the method's binary reply with the codec that converts it, so
/// the server chooses where that conversion runs (a large one off its I/O
/// loop, where it would hold up every frame of the connection).
pub enum JsonReply {
    Json(Value),
    Binary {
        codec: &'static dyn ServiceCodec,
        method: &'static MethodInfo,
        reply: Bytes,
    },
}

impl std::fmt::Debug for JsonReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JsonReply::Json(v) => f.debug_tuple("Json").field(v).finish(),
            JsonReply::Binary { method, reply, .. } => f
                .debug_struct("Binary")
                .field("method", &method.name)
                .field("bytes", &reply.len())
                .finish(),
        }
    }
}

impl JsonReply {
    /// Bytes the conversion to JSON text still has to read: the binary
    /// reply's length, 0 when the reply is JSON already (its text is
    /// written in one pass the server does anyway).
    pub fn binary_len(&self) -> usize {
        match self {
            JsonReply::Json(_) => 0,
            JsonReply::Binary { reply, .. } => reply.len(),
        }
    }

    /// The reply as JSON text, converted now if it is still binary.
    pub fn into_text(self) -> Result<Bytes, DispatchError> {
        let value = match self {
            JsonReply::Json(v) => v,
            JsonReply::Binary {
                codec,
                method,
                reply,
            } => codec.decode_json_reply(method, &reply)?,
        };
        serde_json::to_vec(&value)
            .map(Bytes::from)
            .map_err(|e| DispatchError::EncodeReply(format!("reply as JSON: {e}")))
    }
}

/// The JSON round trip of a service whose JSON goes through `codec` (what
/// generated services do), stopped before the reply is converted: the
/// arguments become binary, the method runs through the binary dispatch,
/// and its reply comes back binary, with the codec to convert it.
pub fn dispatch_json_through<'a, D: super::ServiceDispatch + ?Sized>(
    dispatch: &'a D,
    codec: &'static dyn ServiceCodec,
    method_id: u16,
    args: Value,
    cx: super::CallContext,
) -> super::BoxFuture<'a, Result<JsonReply, DispatchError>> {
    Box::pin(async move {
        let method = codec
            .methods()
            .get(usize::from(method_id))
            .ok_or_else(|| DispatchError::UnknownMethod(format!("{}#{method_id}", codec.name())))?;
        let bytes = codec.encode_json_args(method, args)?;
        let reply = dispatch.dispatch_with(method_id, bytes, cx).await?;
        Ok(JsonReply::Binary {
            codec,
            method,
            reply,
        })
    })
}

/// Calls `method` by name with JSON arguments over any transport and returns
/// the reply as JSON: the CLI's and the gateway's path to a typed service.
pub async fn call_json<T: Transport + ?Sized>(
    codec: &dyn ServiceCodec,
    transport: &T,
    method: &str,
    args: Value,
    options: CallOptions,
) -> Result<Value, CallError> {
    let info = codec.method(method)?;
    let bytes = codec.encode_json_args(info, args)?;
    let reply = transport.call(info, bytes, options).await?;
    Ok(codec.decode_json_reply(info, &reply)?)
}

pub fn method_by_name(
    methods: &'static [MethodInfo],
    service: &str,
    name: &str,
) -> Result<&'static MethodInfo, DispatchError> {
    methods.iter().find(|m| m.name == name).ok_or_else(|| {
        let known: Vec<&str> = methods.iter().map(|m| m.name).collect();
        DispatchError::UnknownMethod(format!(
            "{service}.{name} (methods of {service}: {})",
            known.join(", ")
        ))
    })
}

/// `Demo.incr(key: String)`, for error messages.
fn signature(method: &MethodInfo) -> String {
    let params: Vec<String> = method
        .params
        .iter()
        .map(|p| format!("{}: {}", p.name, p.ty))
        .collect();
    format!("{}.{}({})", method.service, method.name, params.join(", "))
}

/// Postcard-decodes an argument tuple; trailing bytes are an error, since
/// they mean the caller's idea of the signature differs from ours.
pub fn decode_args<T: DeserializeOwned>(
    method: &MethodInfo,
    args: &[u8],
) -> Result<T, DispatchError> {
    let bad = |why: String| DispatchError::BadArgs(format!("{}: {why}", signature(method)));
    let (value, rest) = postcard::take_from_bytes::<T>(args).map_err(|e| bad(e.to_string()))?;
    if !rest.is_empty() {
        return Err(bad(format!("{} unexpected trailing bytes", rest.len())));
    }
    Ok(value)
}

/// Postcard-encodes `value` into a buffer of exactly its size: one
/// allocation and no regrowth, and the `Bytes` made from it needs no second
/// allocation for spare capacity.
fn to_exact_bytes<T: Serialize + ?Sized>(value: &T) -> postcard::Result<Bytes> {
    let len = postcard::experimental::serialized_size(value)?;
    postcard::serialize_with_flavor(value, SliceWriter(Vec::with_capacity(len))).map(Bytes::from)
}

/// Postcard output into a `Vec`, a slice at a time. postcard's own
/// `to_extend` goes through `Extend<u8>`, which copies byte by byte: a
/// 16 KiB argument's encoding was several percent of a client's CPU per
/// call, where one `memcpy` does it.
struct SliceWriter(Vec<u8>);

impl postcard::ser_flavors::Flavor for SliceWriter {
    type Output = Vec<u8>;

    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.0.push(byte);
        Ok(())
    }

    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<Vec<u8>> {
        Ok(self.0)
    }
}

pub fn encode_args<T: Serialize>(method: &MethodInfo, args: &T) -> Result<Bytes, CallError> {
    to_exact_bytes(args).map_err(|e| {
        CallError::encoding(format!("encoding arguments of {}: {e}", signature(method)))
    })
}

/// For the JSON codec: arguments already decoded from JSON, now to bytes.
pub fn json_args_to_bytes<T: Serialize>(
    method: &MethodInfo,
    args: &T,
) -> Result<Bytes, DispatchError> {
    postcard::to_stdvec(args)
        .map(Bytes::from)
        .map_err(|e| DispatchError::BadArgs(format!("{}: {e}", signature(method))))
}

/// Encodes a method's result into a recycled reply buffer when one fits
/// (see `crate::reply_pool`): a server keeps its replies until their
/// clients acknowledge them, and fresh memory per reply costs page faults.
pub fn encode_reply<T: Serialize>(method: &MethodInfo, reply: &T) -> Result<Bytes, DispatchError> {
    crate::reply_pool::encode(reply)
        .map_err(|e| DispatchError::EncodeReply(format!("{}: {e}", signature(method))))
}

pub fn decode_reply<T: DeserializeOwned>(
    method: &MethodInfo,
    reply: &[u8],
) -> Result<T, CallError> {
    postcard::from_bytes(reply).map_err(|e| {
        CallError::decoding(format!(
            "decoding the reply of {} as {}: {e}",
            signature(method),
            method.returns
        ))
    })
}

pub fn reply_to_json<T: Serialize>(method: &MethodInfo, reply: &T) -> Result<Value, DispatchError> {
    serde_json::to_value(reply)
        .map_err(|e| DispatchError::EncodeReply(format!("{} as JSON: {e}", signature(method))))
}

pub fn reply_bytes_to_json<T: Serialize + DeserializeOwned>(
    method: &MethodInfo,
    reply: &[u8],
) -> Result<Value, DispatchError> {
    let value: T = postcard::from_bytes(reply).map_err(|e| {
        DispatchError::BadReply(format!(
            "{} expected {}: {e}",
            signature(method),
            method.returns
        ))
    })?;
    reply_to_json(method, &value)
}

/// Named JSON arguments being taken apart parameter by parameter.
pub struct JsonArgs {
    method: &'static MethodInfo,
    map: Map<String, Value>,
}

impl JsonArgs {
    /// Accepts an object whose keys are all parameter names (`null` stands
    /// for `{}`); names the first unknown key otherwise.
    pub fn new(method: &'static MethodInfo, args: Value) -> Result<JsonArgs, DispatchError> {
        let map = match args {
            Value::Object(map) => map,
            Value::Null => Map::new(),
            other => {
                return Err(DispatchError::BadArgs(format!(
                    "{}: arguments must be a JSON object keyed by parameter name, got {}",
                    signature(method),
                    kind(&other)
                )));
            }
        };
        if let Some(unknown) = map
            .keys()
            .find(|k| !method.params.iter().any(|p| p.name == k.as_str()))
        {
            return Err(DispatchError::BadArgs(format!(
                "{}: unknown parameter `{unknown}`",
                signature(method)
            )));
        }
        Ok(JsonArgs { method, map })
    }

    /// Takes parameter `index`. A missing key decodes as `null`, so an
    /// `Option` parameter may be left out; any other type reports it missing.
    pub fn take<T: DeserializeOwned>(&mut self, index: usize) -> Result<T, DispatchError> {
        let Some(param) = self.method.params.get(index) else {
            return Err(DispatchError::BadArgs(format!(
                "{}: no parameter #{index}",
                signature(self.method)
            )));
        };
        let present = self.map.remove(param.name);
        let was_present = present.is_some();
        serde_json::from_value(present.unwrap_or(Value::Null)).map_err(|e| {
            let what = if was_present {
                format!("expects {}: {e}", param.ty)
            } else {
                format!("is missing (expects {})", param.ty)
            };
            DispatchError::BadArgs(format!(
                "{}: parameter `{}` {what}",
                signature(self.method),
                param.name
            ))
        })
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The slice writer's bytes are postcard's own, in a buffer of exactly
    /// their size, for arguments mixing bytes, strings and integers.
    #[test]
    fn arguments_encode_as_postcard_does_into_an_exact_buffer() {
        // A string goes through `try_extend`, as a byte buffer does.
        let big = "x".repeat(16 * 1024);
        let args = (big, vec![1u8, 2, 3], 300u32, -5i64, Some(1u8));
        let encoded = to_exact_bytes(&args).unwrap();
        assert_eq!(&encoded[..], &postcard::to_allocvec(&args).unwrap()[..]);
        let empty: (Vec<u8>,) = (Vec::new(),);
        assert_eq!(&to_exact_bytes(&empty).unwrap()[..], &[0u8][..]);
    }
}
