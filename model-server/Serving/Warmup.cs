using System.Text.Json;
using Adaptive.ModelServer.Protocol;

namespace Adaptive.ModelServer.Serving;

/// <summary>
/// The requests a server sends itself before it listens, as Triton's model warm-up does: one image of zeros in JSON and one
/// with the binary tensor data extension, at batch 1. A fresh server's first request otherwise pays for .NET compiling the
/// request path and for ONNX Runtime's first run: 58 ms against 13 ms later for a ResNet-18 at 96 px on one thread, which
/// is what a replica added in a surge meets first. Only batch 1: on a CPU the first run at a larger batch costs a few
/// milliseconds more than later ones (69 against 53 ms at batch 8), which a run at the max batch would move into every
/// start at the cost of the whole batch (a second for a ResNet-152 at 224 px). A model whose inputs leave a dimension other
/// than the batch one open has no request to make up: it starts cold.
/// </summary>
public static class Warmup
{
    /// <summary>The request bodies, each with its <see cref="InferRequestReader.HeaderLengthHeader"/> (null for plain JSON); none when the inputs cannot be made up.</summary>
    public static IReadOnlyList<(byte[] Body, int? HeaderLength)> Requests(IReadOnlyList<TensorSpec> inputs, bool batchFirst)
    {
        var shapes = inputs.Select(input => input.Shape.Select((d, i) => i == 0 && batchFirst ? 1 : d).ToArray()).ToList();
        if (shapes.Any(s => s.Any(d => d < 0))) return [];
        byte[] json = Header(inputs, shapes, binary: false);
        byte[] header = Header(inputs, shapes, binary: true);
        long dataBytes = inputs.Zip(shapes, (input, shape) => shape.Aggregate(1L, (a, b) => a * b) * BinaryElementSize(input.DataType)).Sum();
        var binary = new byte[header.Length + dataBytes]; // zeros after the header: every element 0, every string empty
        header.CopyTo(binary, 0);
        return [(json, null), (binary, header.Length)];
    }

    static byte[] Header(IReadOnlyList<TensorSpec> inputs, IReadOnlyList<long[]> shapes, bool binary)
    {
        using var body = new MemoryStream();
        using (var json = new Utf8JsonWriter(body))
        {
            json.WriteStartObject();
            json.WriteString("id", "warm-up");
            json.WriteStartArray("inputs");
            for (int i = 0; i < inputs.Count; i++)
            {
                long elements = shapes[i].Aggregate(1L, (a, b) => a * b);
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
