using System.Buffers;
using System.Text.Json;

namespace Adaptive.ModelServer.Protocol;

/// <summary>Writes Open Inference Protocol responses, metadata and errors as JSON.</summary>
public static class InferResponseWriter
{
    /// <summary>
    /// Writes the response; outputs marked binary carry <c>parameters.binary_data_size</c> in the JSON and
    /// their raw bytes after it, in order. Returns the JSON header's length when any output is binary (the
    /// value of <c>Inference-Header-Content-Length</c>), null for an all-JSON response.
    /// </summary>
    public static int? WriteResponse(ArrayBufferWriter<byte> buffer, string modelName, string? id, IReadOnlyList<(Tensor Tensor, bool Binary)> outputs)
    {
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteString("model_name", modelName);
            if (id is not null) json.WriteString("id", id);
            json.WriteStartArray("outputs");
            foreach (var (output, binary) in outputs)
            {
                json.WriteStartObject();
                json.WriteString("name", output.Name);
                json.WriteString("datatype", output.DataType.ToProtocolName());
                WriteShape(json, "shape", output.Shape);
                if (binary)
                {
                    json.WriteStartObject("parameters");
                    json.WriteNumber("binary_data_size", output.Bytes.Length);
                    json.WriteEndObject();
                }
                else
                {
                    json.WriteStartArray("data");
                    WriteData(json, output);
                    json.WriteEndArray();
                }
                json.WriteEndObject();
            }
            json.WriteEndArray();
            json.WriteEndObject();
        }
        if (!outputs.Any(o => o.Binary)) return null;
        int headerLength = buffer.WrittenCount;
        foreach (var (output, _) in outputs.Where(o => o.Binary)) buffer.Write(output.Bytes);
        return headerLength;
    }

    public static void WriteShape(Utf8JsonWriter json, string property, IEnumerable<long> shape)
    {
        json.WriteStartArray(property);
        foreach (long dim in shape) json.WriteNumberValue(dim);
        json.WriteEndArray();
    }

    static void WriteData(Utf8JsonWriter json, Tensor tensor)
    {
        switch (tensor.Data)
        {
            // JSON has no NaN or infinities; write them as the strings other servers use rather than fail.
            case float[] floats:
                foreach (float f in floats)
                    if (float.IsFinite(f)) json.WriteNumberValue(f); else json.WriteStringValue(f.ToString(System.Globalization.CultureInfo.InvariantCulture));
                break;
            case double[] doubles:
                foreach (double d in doubles)
                    if (double.IsFinite(d)) json.WriteNumberValue(d); else json.WriteStringValue(d.ToString(System.Globalization.CultureInfo.InvariantCulture));
                break;
            case int[] ints:
                foreach (int i in ints) json.WriteNumberValue(i);
                break;
            case long[] longs:
                foreach (long l in longs) json.WriteNumberValue(l);
                break;
            default:
                throw new InvalidOperationException($"tensor '{tensor.Name}' holds {tensor.Data.GetType().Name}");
        }
    }
}
