using Adaptive.ModelServer.Grpc.V2;
using Adaptive.ModelServer.Protocol;
using Adaptive.ModelServer.Serving;
using System.Text.Json;
using System.Text.Json.Nodes;
using Google.Protobuf;

namespace Adaptive.ModelServer.Grpc;

/// <summary>
/// Between the protocol's gRPC messages and the server's tensors. Inputs come as <c>raw_input_contents</c>
/// (one entry per input, little-endian elements; BYTES length-prefixed, as the binary data extension has
/// them) or as typed <c>contents</c>; each is checked against the model's <see cref="InputContract"/> before
/// its array is taken, and every refusal names the input and what is wrong. Outputs always go back as
/// <c>raw_output_contents</c>, as Triton answers.
/// </summary>
public static class GrpcTensors
{
    public static InferRequest Read(ModelInferRequest request, InputContract contract, TensorArrayPool arrays)
    {
        bool raw = CheckInputs(request);
        var inputs = new List<Tensor>(request.Inputs.Count);
        try
        {
            for (int i = 0; i < request.Inputs.Count; i++)
            {
                var (input, type, shape, count) = Declared(request, i);
                contract.Check(input.Name, type, shape);
                inputs.Add(new Tensor(input.Name, type, shape, raw
                    ? FromRaw(input.Name, type, count, request.RawInputContents[i].Span, arrays)
                    : FromContents(input.Name, type, count, input.Contents, arrays)));
            }
        }
        catch
        {
            foreach (var tensor in inputs) arrays.Return(tensor.DataType, tensor.Data);
            throw;
        }
        return new InferRequest(request.Id.Length > 0 ? request.Id : null, inputs, RequestedOutputs(request));
    }

    /// <summary>
    /// The request as a REST body in the binary tensor data extension (a JSON header, then each input's bytes),
    /// asking for binary outputs: what the router sends its first stage. The model servers check the inputs
    /// against their models; here only what the conversion needs.
    /// </summary>
    public static (byte[] Body, int HeaderLength) ToBinaryBody(ModelInferRequest request)
    {
        bool raw = CheckInputs(request);
        var inputs = new JsonArray();
        var data = new List<byte[]>(request.Inputs.Count);
        for (int i = 0; i < request.Inputs.Count; i++)
        {
            var (input, type, shape, count) = Declared(request, i);
            byte[] bytes;
            if (raw)
            {
                // Raw contents are already what the binary extension carries, BYTES length-prefixed included.
                bytes = request.RawInputContents[i].ToByteArray();
                if (type.HasFixedSize()) CheckRawSize(input.Name, type, count, bytes.Length);
                else BytesElements.Decode(bytes, new byte[count][], input.Name);
            }
            else bytes = new Tensor(input.Name, type, shape, FromContents(input.Name, type, count, input.Contents, NoReuse)).BinaryData().ToArray();
            data.Add(bytes);
            inputs.Add(new JsonObject
            {
                ["name"] = input.Name, ["datatype"] = type.ToProtocolName(), ["shape"] = new JsonArray([.. shape.Select(d => (JsonNode)d)]),
                ["parameters"] = new JsonObject { ["binary_data_size"] = bytes.Length },
            });
        }
        var header = new JsonObject { ["inputs"] = inputs, ["parameters"] = new JsonObject { ["binary_data_output"] = true } };
        if (request.Id.Length > 0) header["id"] = request.Id;
        if (RequestedOutputs(request) is { } outputs) header["outputs"] = new JsonArray([.. outputs.Select(o => (JsonNode)new JsonObject { ["name"] = o.Name })]);
        byte[] json = JsonSerializer.SerializeToUtf8Bytes(header);
        return ([.. json, .. data.SelectMany(d => d)], json.Length);
    }

    /// <summary>A model server's answer in the binary tensor data extension as the gRPC response of <paramref name="modelName"/>.</summary>
    public static ModelInferResponse FromBinaryBody(ReadOnlySpan<byte> body, int headerLength, string modelName)
    {
        var header = JsonNode.Parse(body[..headerLength])!.AsObject();
        var response = new ModelInferResponse { ModelName = modelName, ModelVersion = InferenceService.Version, Id = (string?)header["id"] ?? "" };
        int at = headerLength;
        foreach (var output in header["outputs"]!.AsArray())
        {
            long size = (long?)output!["parameters"]?["binary_data_size"] ?? throw new InvalidDataException($"output '{output["name"]}' has no binary_data_size");
            var tensor = new ModelInferResponse.Types.InferOutputTensor { Name = (string)output["name"]!, Datatype = (string)output["datatype"]! };
            tensor.Shape.AddRange(output["shape"]!.AsArray().Select(d => (long)d!));
            if (size > body.Length - at) throw new InvalidDataException($"output '{tensor.Name}' claims {size} bytes, the body has {body.Length - at} left");
            response.Outputs.Add(tensor);
            response.RawOutputContents.Add(ByteString.CopyFrom(body.Slice(at, (int)size)));
            at += (int)size;
        }
        return response;
    }

    /// <summary>A REST request, once read, as the gRPC request of <paramref name="model"/>, every input raw: what the router sends a gRPC stage.</summary>
    public static ModelInferRequest ToGrpc(InferRequest request, string model)
    {
        var grpc = new ModelInferRequest { ModelName = model, Id = request.Id ?? "" };
        foreach (var input in request.Inputs)
        {
            grpc.Inputs.Add(new ModelInferRequest.Types.InferInputTensor { Name = input.Name, Datatype = input.DataType.ToProtocolName(), Shape = { input.Shape } });
            grpc.RawInputContents.Add(ByteString.CopyFrom(input.BinaryData()));
        }
        if (request.RequestedOutputs is { } outputs) grpc.Outputs.AddRange(outputs.Select(o => new ModelInferRequest.Types.InferRequestedOutputTensor { Name = o.Name }));
        return grpc;
    }

    /// <summary>
    /// A gRPC stage's answer as the REST answer to <paramref name="asked"/>: each output as binary data where the request
    /// asked for it (<c>binary_data</c>, <c>binary_data_output</c>), as JSON otherwise. An answer that does not hold
    /// what it declares is an <see cref="InvalidDataException"/>.
    /// </summary>
    public static (byte[] Body, int? HeaderLength) ToRest(ModelInferResponse response, InferRequest asked)
    {
        if (response.RawOutputContents.Count != response.Outputs.Count)
            throw new InvalidDataException($"{response.Outputs.Count} outputs with {response.RawOutputContents.Count} raw_output_contents");
        var outputs = new List<(Tensor, bool)>(response.Outputs.Count);
        for (int i = 0; i < response.Outputs.Count; i++)
        {
            var output = response.Outputs[i];
            var type = TensorDataTypes.FromProtocolName(output.Datatype) ?? throw new InvalidDataException($"output '{output.Name}' has datatype '{output.Datatype}'");
            long[] shape = [.. output.Shape];
            var raw = response.RawOutputContents[i].Span;
            // Checked against the bytes before an array is taken: an answer cannot make the router allocate more than it carries.
            double elements = shape.Aggregate(1.0, (product, d) => product * d); // exact up to the body sizes that pass
            double needs = elements * (type.HasFixedSize() ? type.ElementSize() : 4); // a BYTES element takes 4 bytes at least
            if (shape.Any(d => d < 0) || needs > raw.Length || (type.HasFixedSize() && needs != raw.Length))
                throw new InvalidDataException($"output '{output.Name}' of shape {Tensor.FormatShape(shape)} has {raw.Length} bytes of {output.Datatype}");
            long count = (long)elements;
            var data = type.NewArray(count);
            if (type.HasFixedSize()) raw.CopyTo(Tensor.BytesOf(data));
            else
            {
                try
                {
                    BytesElements.Decode(raw, (byte[][])data, output.Name);
                }
                catch (ProtocolException e)
                {
                    throw new InvalidDataException(e.Message);
                }
            }
            bool binary = asked.RequestedOutputs?.FirstOrDefault(o => o.Name == output.Name)?.Binary ?? asked.BinaryDataOutput;
            outputs.Add((new Tensor(output.Name, type, shape, data), binary));
        }
        var body = new System.Buffers.ArrayBufferWriter<byte>();
        int? headerLength = InferResponseWriter.WriteResponse(body, response.ModelName, response.Id.Length > 0 ? response.Id : null, outputs);
        return (body.WrittenSpan.ToArray(), headerLength);
    }

    /// <summary>Checks what holds for the request as a whole; whether its inputs come raw.</summary>
    static bool CheckInputs(ModelInferRequest request)
    {
        if (request.Inputs.Count == 0) throw Invalid("inputs is required and must list at least one tensor");
        bool raw = request.RawInputContents.Count > 0;
        if (raw && request.RawInputContents.Count != request.Inputs.Count)
            throw Invalid($"raw_input_contents has {request.RawInputContents.Count} entries for {request.Inputs.Count} inputs: give one per input, or none and typed contents");
        return raw;
    }

    /// <summary>Input <paramref name="i"/>'s name, datatype and shape, each checked, and its element count.</summary>
    static (ModelInferRequest.Types.InferInputTensor Input, TensorDataType Type, long[] Shape, long Count) Declared(ModelInferRequest request, int i)
    {
        var input = request.Inputs[i];
        if (string.IsNullOrEmpty(input.Name)) throw Invalid($"inputs[{i}].name is required");
        var type = TensorDataTypes.FromProtocolName(input.Datatype)
            ?? throw Invalid($"input '{input.Name}': datatype '{input.Datatype}' is not supported; use one of {TensorDataTypes.Supported}");
        long[] shape = [.. input.Shape];
        if (shape.Any(d => d < 0)) throw Invalid($"input '{input.Name}': shape {Tensor.FormatShape(shape)} has a negative dimension");
        if (request.RawInputContents.Count > 0 && input.Contents is { } typed && typed.CalculateSize() > 0)
            throw Invalid($"input '{input.Name}': give its elements in raw_input_contents or in contents, not both");
        return (input, type, shape, ElementCount(input.Name, shape));
    }

    static List<RequestedOutput>? RequestedOutputs(ModelInferRequest request) => request.Outputs.Count == 0 ? null
        : [.. request.Outputs.Select((o, i) => new RequestedOutput(string.IsNullOrEmpty(o.Name) ? throw Invalid($"outputs[{i}].name is required") : o.Name, Binary: null))];

    /// <summary>Arrays for conversions whose tensors are not kept: nothing is retained.</summary>
    static readonly TensorArrayPool NoReuse = new(0);

    public static ModelInferResponse Write(string modelName, string? id, InferResult result)
    {
        var response = new ModelInferResponse { ModelName = modelName, ModelVersion = InferenceService.Version, Id = id ?? "" };
        foreach (var (tensor, _) in result.Outputs)
        {
            var output = new ModelInferResponse.Types.InferOutputTensor { Name = tensor.Name, Datatype = tensor.DataType.ToProtocolName() };
            output.Shape.AddRange(tensor.Shape);
            response.Outputs.Add(output);
            response.RawOutputContents.Add(ByteString.CopyFrom(tensor.BinaryData()));
        }
        return response;
    }

    static long ElementCount(string name, long[] shape)
    {
        try
        {
            return Tensor.ElementCount(shape);
        }
        catch (OverflowException)
        {
            throw Invalid($"input '{name}': shape {Tensor.FormatShape(shape)} has more elements than can be counted");
        }
    }

    static Array FromRaw(string name, TensorDataType type, long count, ReadOnlySpan<byte> bytes, TensorArrayPool arrays)
    {
        if (!type.HasFixedSize())
        {
            var elements = new byte[count][];
            BytesElements.Decode(bytes, elements, name);
            return elements;
        }
        CheckRawSize(name, type, count, bytes.Length);
        var data = arrays.Rent(type, count);
        bytes.CopyTo(Tensor.BytesOf(data));
        return data;
    }

    static void CheckRawSize(string name, TensorDataType type, long count, int length)
    {
        if (length != count * type.ElementSize())
            throw Invalid($"input '{name}': raw_input_contents has {length} bytes, its shape of {count} {type.ToProtocolName()} elements needs {count * type.ElementSize()}");
    }

    /// <summary>The elements from the typed field the protocol gives <paramref name="type"/>; the field must hold exactly <paramref name="count"/>.</summary>
    static Array FromContents(string name, TensorDataType type, long count, InferTensorContents? contents, TensorArrayPool arrays)
    {
        if (contents is null) throw Invalid($"input '{name}': give its elements in contents or in raw_input_contents");
        switch (type)
        {
            case TensorDataType.Bool: return Fill(name, "bool_contents", contents.BoolContents, type, count, arrays, (bool v, out bool e) => (e = v) == v);
            case TensorDataType.Int8: return Fill(name, "int_contents", contents.IntContents, type, count, arrays, (int v, out sbyte e) => (e = (sbyte)v) == v);
            case TensorDataType.Int16: return Fill(name, "int_contents", contents.IntContents, type, count, arrays, (int v, out short e) => (e = (short)v) == v);
            case TensorDataType.Int32: return Fill(name, "int_contents", contents.IntContents, type, count, arrays, (int v, out int e) => (e = v) == v);
            case TensorDataType.Int64: return Fill(name, "int64_contents", contents.Int64Contents, type, count, arrays, (long v, out long e) => (e = v) == v);
            case TensorDataType.Uint8: return Fill(name, "uint_contents", contents.UintContents, type, count, arrays, (uint v, out byte e) => (e = (byte)v) == v);
            case TensorDataType.Uint16: return Fill(name, "uint_contents", contents.UintContents, type, count, arrays, (uint v, out ushort e) => (e = (ushort)v) == v);
            case TensorDataType.Uint32: return Fill(name, "uint_contents", contents.UintContents, type, count, arrays, (uint v, out uint e) => (e = v) == v);
            case TensorDataType.Uint64: return Fill(name, "uint64_contents", contents.Uint64Contents, type, count, arrays, (ulong v, out ulong e) => (e = v) == v);
            case TensorDataType.Fp32: return Fill(name, "fp32_contents", contents.Fp32Contents, type, count, arrays, (float v, out float e) => { e = v; return true; });
            case TensorDataType.Fp64: return Fill(name, "fp64_contents", contents.Fp64Contents, type, count, arrays, (double v, out double e) => { e = v; return true; });
            case TensorDataType.Bytes:
                if (contents.BytesContents.Count != count)
                    throw Invalid($"input '{name}': bytes_contents has {contents.BytesContents.Count} elements, its shape needs {count}");
                return contents.BytesContents.Select(b => b.ToByteArray()).ToArray();
            default:
                throw Invalid($"input '{name}': {type.ToProtocolName()} has no typed contents field; send it in raw_input_contents");
        }
    }

    delegate bool Narrow<TField, TElement>(TField value, out TElement element);

    static Array Fill<TField, TElement>(string name, string field, IReadOnlyList<TField> values, TensorDataType type, long count, TensorArrayPool arrays, Narrow<TField, TElement> narrow)
    {
        if (values.Count != count) throw Invalid($"input '{name}': {field} has {values.Count} elements, its shape needs {count}");
        var data = arrays.Rent(type, count);
        var elements = (TElement[])data;
        for (int i = 0; i < elements.Length; i++)
        {
            if (!narrow(values[i], out elements[i]))
            {
                arrays.Return(type, data);
                throw Invalid($"input '{name}': {field}[{i}] = {values[i]} is out of range for {type.ToProtocolName()}");
            }
        }
        return data;
    }

    static ProtocolException Invalid(string message) => ProtocolException.Invalid(message);
}
