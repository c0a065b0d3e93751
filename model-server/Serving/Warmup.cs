using System.Text.Json;
using Adaptive.ModelServer.Protocol;

namespace Adaptive.ModelServer.Serving;

/// <summary>
/// The requests a server sends itself before it listens, as Triton's model warm-up does: one image of zeros in JSON and one
/// with the binary tensor data extension, at batch 1. A fresh server's first request otherwise pays for .NET compiling the
/// request path and for ONNX Runtime's first run, and a replica added in a surge meets its first requests at full load:
/// for a ResNet-18 at 96 px on one thread, 55 ms cold and 18 ms warmed up, against 11 ms later (<c>adaptive bench
/// cold-start</c>). Only batch 1: after it, a first request of 8 images took 36 ms against 26 ms later (70 ms cold;
/// <c>bench cold-start --batch 8</c>), where a warm-up at the max batch would put the whole batch's time into every start
/// (868 ms for a ResNet-152 at 224 px on a CPU). A model whose inputs leave a dimension other than the batch one open has
/// no request to make up: it starts cold.
/// </summary>
public static class Warmup
{
    /// <summary>The request bodies, each with its <see cref="InferRequestReader.HeaderLengthHeader"/> (null for plain JSON); none when the inputs cannot be made up.</summary>
    public static IReadOnlyList<(byte[] Body, int? HeaderLength)> Requests(IReadOnlyList<TensorSpec> inputs, bool batchFirst)
    {
        var shapes = inputs.Select(input => input.Shape.Select((d, i) => i == 0 && batchFirst ? 1 : d).ToArray()).ToList();
        if (shapes.Any(s => s.Any(d => d < 0))) return [];
        byte[] json = Json(inputs, shapes, binary: false);
        byte[] header = Json(inputs, shapes, binary: true);
        long dataBytes = inputs.Zip(shapes, (input, shape) => Tensor.ElementCount(shape) * BinaryElementSize(input.DataType)).Sum();
        var binary = new byte[header.Length + dataBytes]; // zeros after the header: every element 0, every string empty
        header.CopyTo(binary, 0);
        return [(json, null), (binary, header.Length)];
    }

    /// <summary>The request's JSON: the whole body, or with <paramref name="binary"/> the header the data follows.</summary>
    static byte[] Json(IReadOnlyList<TensorSpec> inputs, IReadOnlyList<long[]> shapes, bool binary)
    {
        using var body = new MemoryStream();
        using (var json = new Utf8JsonWriter(body))
        {
            json.WriteStartObject();
            json.WriteString("id", "warm-up");
            json.WriteStartArray("inputs");
            for (int i = 0; i < inputs.Count; i++)
            {
                long elements = Tensor.ElementCount(shapes[i]);
                json.WriteStartObject();
                json.WriteString("name", inputs[i].Name);
                json.WriteString("datatype", inputs[i].DataType.ToProtocolName());
                InferResponseWriter.WriteShape(json, "shape", shapes[i]);
                if (binary)
                {
                    json.WriteStartObject("parameters");
                    json.WriteNumber("binary_data_size", elements * BinaryElementSize(inputs[i].DataType));
                    json.WriteEndObject();
                }
                else
                {
                    json.WriteStartArray("data");
                    for (long e = 0; e < elements; e++)
                        switch (inputs[i].DataType)
                        {
                            case TensorDataType.Bool: json.WriteBooleanValue(false); break;
                            case TensorDataType.Bytes: json.WriteStringValue(""); break;
                            default: json.WriteNumberValue(0); break;
                        }
                    json.WriteEndArray();
                }
                json.WriteEndObject();
            }
            json.WriteEndArray();
            json.WriteEndObject();
        }
        return body.ToArray();
    }

    /// <summary>The bytes of one element of zeros with the binary extension: a string is its 4-byte length, 0.</summary>
    static int BinaryElementSize(TensorDataType type) => type.HasFixedSize() ? type.ElementSize() : sizeof(int);
}
