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
                    json.WriteNumber("binary_data_size", output.BinaryData().Length);
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
        foreach (var (output, _) in outputs.Where(o => o.Binary)) buffer.Write(output.BinaryData());
        return headerLength;
    }

    public static void WriteShape(Utf8JsonWriter json, string property, IEnumerable<long> shape)
    {
        json.WriteStartArray(property);
        foreach (long dim in shape) json.WriteNumberValue(dim);
        json.WriteEndArray();
    }

    /// <summary>
    /// The elements as JSON values. By the datatype, not the array's type: the runtime lets an sbyte[] pass
    /// for a byte[] (and int[] for uint[], …), so a switch on the array would write INT8 -128 as 128.
    /// </summary>
    static void WriteData(Utf8JsonWriter json, Tensor tensor)
    {
        var data = tensor.Data;
        switch (tensor.DataType)
        {
            case TensorDataType.Fp32: foreach (float f in (float[])data) WriteFloat(json, f); break;
            case TensorDataType.Fp16: foreach (ushort h in (ushort[])data) WriteFloat(json, TensorDataTypes.FromFp16(h)); break;
            case TensorDataType.Bf16: foreach (ushort b in (ushort[])data) WriteFloat(json, TensorDataTypes.FromBf16(b)); break;
            case TensorDataType.Fp64:
                // JSON has no NaN or infinities; write them as the strings other servers use rather than fail.
                foreach (double d in (double[])data)
                    if (double.IsFinite(d)) json.WriteNumberValue(d); else json.WriteStringValue(d.ToString(System.Globalization.CultureInfo.InvariantCulture));
                break;
            case TensorDataType.Bool: foreach (bool b in (bool[])data) json.WriteBooleanValue(b); break;
            case TensorDataType.Uint8: foreach (byte b in (byte[])data) json.WriteNumberValue(b); break;
            case TensorDataType.Uint16: foreach (ushort u in (ushort[])data) json.WriteNumberValue(u); break;
            case TensorDataType.Uint32: foreach (uint u in (uint[])data) json.WriteNumberValue(u); break;
            case TensorDataType.Uint64: foreach (ulong u in (ulong[])data) json.WriteNumberValue(u); break;
            case TensorDataType.Int8: foreach (sbyte b in (sbyte[])data) json.WriteNumberValue(b); break;
            case TensorDataType.Int16: foreach (short v in (short[])data) json.WriteNumberValue(v); break;
            case TensorDataType.Int32: foreach (int i in (int[])data) json.WriteNumberValue(i); break;
            case TensorDataType.Int64: foreach (long l in (long[])data) json.WriteNumberValue(l); break;
            case TensorDataType.Bytes: foreach (byte[] b in (byte[][])data) json.WriteStringValue(System.Text.Encoding.UTF8.GetString(b)); break;
            default: throw new InvalidOperationException($"tensor '{tensor.Name}' has datatype {tensor.DataType}");
        }
    }

    /// <summary>A float, or for NaN and the infinities, which JSON has not, the strings other servers write.</summary>
    static void WriteFloat(Utf8JsonWriter json, float value)
    {
        if (float.IsFinite(value)) json.WriteNumberValue(value); else json.WriteStringValue(value.ToString(System.Globalization.CultureInfo.InvariantCulture));
    }
}
