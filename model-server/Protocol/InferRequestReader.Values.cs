using System.Text.Json;

namespace Adaptive.ModelServer.Protocol;

/// <summary>The readers of the small JSON values of a request: shapes, parameters, requested outputs, and single elements.</summary>
public sealed partial class InferRequestReader
{
    /// <summary>The elements of a shape; one whose product overflows is a client's error, not the server's.</summary>
    static long ElementCount(long[] shape, string path)
    {
        try
        {
            return Tensor.ElementCount(shape);
        }
        catch (OverflowException)
        {
            throw Bad($"{path}: shape {Tensor.FormatShape(shape)} holds more elements than any tensor can");
        }
    }

    static long[] ReadShape(ref Utf8JsonReader reader, string path)
    {
        if (reader.TokenType != JsonTokenType.StartArray) throw Bad($"{path}.shape must be an array of non-negative integers");
        var shape = new List<long>();
        while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
        {
            if (reader.TokenType != JsonTokenType.Number || !reader.TryGetInt64(out long dim) || dim < 0 || dim > int.MaxValue)
                throw Bad($"{path}.shape must be an array of non-negative integers");
            shape.Add(dim);
            if (shape.Count > 16) throw Bad($"{path}.shape has more than 16 dimensions");
        }
        return [.. shape];
    }

    /// <summary>The JSON token an element of <paramref name="type"/> is written as (BOOL: true, or false).</summary>
    static JsonTokenType ElementToken(TensorDataType type) => type switch
    {
        TensorDataType.Bool => JsonTokenType.True,
        TensorDataType.Bytes => JsonTokenType.String,
        _ => JsonTokenType.Number,
    };

    /// <summary>Stores one JSON value as an element of <paramref name="type"/>: booleans for BOOL, numbers in range for the others.</summary>
    static bool Store(ref Utf8JsonReader reader, TensorDataType type, Array values, long index)
    {
        if (type == TensorDataType.Bytes)
        {
            if (reader.TokenType != JsonTokenType.String) return false;
            ((byte[][])values)[index] = System.Text.Encoding.UTF8.GetBytes(reader.GetString()!);
            return true;
        }
        if (type == TensorDataType.Bool)
        {
            if (reader.TokenType is not (JsonTokenType.True or JsonTokenType.False)) return false;
            ((bool[])values)[index] = reader.GetBoolean();
            return true;
        }
        if (reader.TokenType != JsonTokenType.Number) return false;
        switch (type)
        {
            case TensorDataType.Uint8 when reader.TryGetByte(out byte v): ((byte[])values)[index] = v; return true;
            case TensorDataType.Uint16 when reader.TryGetUInt16(out ushort v): ((ushort[])values)[index] = v; return true;
            case TensorDataType.Uint32 when reader.TryGetUInt32(out uint v): ((uint[])values)[index] = v; return true;
            case TensorDataType.Uint64 when reader.TryGetUInt64(out ulong v): ((ulong[])values)[index] = v; return true;
            case TensorDataType.Int8 when reader.TryGetSByte(out sbyte v): ((sbyte[])values)[index] = v; return true;
            case TensorDataType.Int16 when reader.TryGetInt16(out short v): ((short[])values)[index] = v; return true;
            case TensorDataType.Int32 when reader.TryGetInt32(out int v): ((int[])values)[index] = v; return true;
            case TensorDataType.Int64 when reader.TryGetInt64(out long v): ((long[])values)[index] = v; return true;
            case TensorDataType.Fp32 when reader.TryGetSingle(out float v) && float.IsFinite(v): ((float[])values)[index] = v; return true;
            case TensorDataType.Fp64 when reader.TryGetDouble(out double v) && double.IsFinite(v): ((double[])values)[index] = v; return true;
            case TensorDataType.Fp16 when reader.TryGetSingle(out float v) && TensorDataTypes.ToFp16(v) is { } bits: ((ushort[])values)[index] = bits; return true;
            case TensorDataType.Bf16 when reader.TryGetSingle(out float v) && TensorDataTypes.ToBf16(v) is { } bits: ((ushort[])values)[index] = bits; return true;
            default: return false;
        }
    }

    static List<RequestedOutput> ReadRequestedOutputs(ref Utf8JsonReader reader)
    {
        if (reader.TokenType != JsonTokenType.StartArray) throw Bad("'outputs' must be an array of objects with a name");
        var outputs = new List<RequestedOutput>();
        while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
        {
            string path = $"outputs[{outputs.Count}]";
            if (reader.TokenType != JsonTokenType.StartObject) throw Bad($"{path} must be an object with a name");
            string? name = null;
            bool? binary = null;
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                string property = reader.GetString()!;
                reader.Read();
                if (property == "name" && reader.TokenType == JsonTokenType.String) name = reader.GetString();
                else if (property == "parameters") binary = ReadBoolParameter(ref reader, "binary_data", $"{path}.parameters");
                else reader.Skip();
            }
            outputs.Add(new RequestedOutput(string.IsNullOrEmpty(name) ? throw Bad($"{path}.name is required") : name, binary));
        }
        return outputs;
    }

    /// <summary>Reads a parameters object for one boolean parameter, skipping the others.</summary>
    static bool? ReadBoolParameter(ref Utf8JsonReader reader, string parameter, string path)
    {
        if (reader.TokenType != JsonTokenType.StartObject) throw Bad($"{path} must be an object");
        bool? value = null;
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            string property = reader.GetString()!;
            reader.Read();
            if (property != parameter) reader.Skip();
            else if (reader.TokenType is JsonTokenType.True or JsonTokenType.False) value = reader.GetBoolean();
            else throw Bad($"{path}.{parameter} must be true or false");
        }
        return value;
    }

    static long? ReadBinarySize(ref Utf8JsonReader reader, string path)
    {
        if (reader.TokenType != JsonTokenType.StartObject) throw Bad($"{path}.parameters must be an object");
        long? size = null;
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            string property = reader.GetString()!;
            reader.Read();
            if (property != "binary_data_size") reader.Skip();
            else if (reader.TokenType == JsonTokenType.Number && reader.TryGetInt64(out long bytes) && bytes >= 0) size = bytes;
            else throw Bad($"{path}.parameters.binary_data_size must be a non-negative integer");
        }
        return size;
    }

    /// <summary>
    /// Reads an input's data, flat or nested (row-major), into its array one JSON token at a time, so that it
    /// can be fed as the body arrives; the data must fill the array exactly, and nested data must follow the
    /// shape at every level (a ragged array whose count happens to match is refused, not flattened).
    /// </summary>
    sealed class TensorDataReader(TensorDataType type, Array values, long[] shape, string path)
    {
        long index;
        int depth;
        /// <summary>The entries so far of the array open at each depth (1 is the outermost).</summary>
        readonly long[] entries = new long[Math.Max(shape.Length, 1) + 1];
        bool nested, flat;

        public Array Values => values;

        /// <summary>Takes the data's next token; true once its closing bracket is read.</summary>
        public bool Take(ref Utf8JsonReader reader)
        {
            long count = values.LongLength;
            switch (reader.TokenType)
            {
                case JsonTokenType.StartArray:
                    if (depth > 0)
                    {
                        if (depth >= shape.Length) throw Bad($"{path}: data is nested deeper than its shape {Tensor.FormatShape(shape)}");
                        if (flat) throw Bad($"{path}: data mixes numbers and nested arrays at its outer level");
                        nested = true;
                        entries[depth]++;
                    }
                    entries[++depth] = 0;
                    return false;
                case JsonTokenType.EndArray:
                    if (nested && entries[depth] != shape[depth - 1])
                        throw Bad($"{path}: nested data must follow shape {Tensor.FormatShape(shape)}: an array at depth {depth} has {entries[depth]} entries, the shape {shape[depth - 1]}");
                    if (--depth > 0) return false;
                    if (index != count) throw Bad($"{path}: data has {index} elements, shape {Tensor.FormatShape(shape)} needs {count}");
                    return true;
                case var _ when depth == 0:
                    throw Bad($"{path}: data must be an array");
                case var token when token == ElementToken(type) || (type == TensorDataType.Bool && token == JsonTokenType.False):
                    if (depth == 1 && nested) throw Bad($"{path}: data mixes numbers and nested arrays at its outer level");
                    if (depth > 1 && depth != shape.Length)
                        throw Bad($"{path}: nested data must follow shape {Tensor.FormatShape(shape)}: elements at depth {depth}, the shape has {shape.Length} dimensions");
                    flat |= depth == 1;
                    entries[depth]++;
                    if (index >= count) throw Bad($"{path}: data has more than the {count} elements of shape {Tensor.FormatShape(shape)}");
                    if (!Store(ref reader, type, values, index)) throw Bad($"{path}: data element {index} is not a valid {type.ToProtocolName()} value");
                    index++;
                    return false;
                default:
                    throw Bad($"{path}: data element {index} is not a {type switch { TensorDataType.Bool => "boolean", TensorDataType.Bytes => "string", _ => "number" }}");
            }
        }
    }

    static ProtocolException Bad(string message) => ProtocolException.Invalid(message);
}
