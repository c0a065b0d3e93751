using System.Text.Json;

namespace Adaptive.ModelServer.Protocol;

/// <summary>
/// Reads an Open Inference Protocol (KServe v2) inference request from its JSON body in one pass,
/// straight into typed arrays. Every refusal is a 400 whose message names the offending field.
/// </summary>
public static class InferRequestReader
{
    const int MaxDepth = 32;

    public static InferRequest Parse(ReadOnlySpan<byte> json)
    {
        var reader = new Utf8JsonReader(json, new JsonReaderOptions { MaxDepth = MaxDepth });
        try
        {
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject) throw Bad("the request body must be a JSON object");
            string? id = null;
            List<Tensor>? inputs = null;
            List<string>? outputs = null;
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                string property = reader.GetString()!;
                reader.Read();
                switch (property)
                {
                    case "id":
                        if (reader.TokenType is not (JsonTokenType.String or JsonTokenType.Null)) throw Bad("'id' must be a string");
                        id = reader.GetString();
                        break;
                    case "inputs":
                        inputs = ReadInputs(ref reader, json.Length);
                        break;
                    case "outputs":
                        outputs = ReadRequestedOutputs(ref reader);
                        break;
                    default:
                        reader.Skip(); // "parameters" and extensions this server does not use
                        break;
                }
            }
            if (inputs is null || inputs.Count == 0) throw Bad("'inputs' is required and must list at least one tensor");
            return new InferRequest(id, inputs, outputs);
        }
        catch (JsonException e)
        {
            throw Bad($"malformed JSON: {e.Message}");
        }
        catch (InvalidOperationException e)
        {
            throw Bad($"malformed JSON: {e.Message}");
        }
    }

    static List<Tensor> ReadInputs(ref Utf8JsonReader reader, int bodyLength)
    {
        if (reader.TokenType != JsonTokenType.StartArray) throw Bad("'inputs' must be an array of tensors");
        var inputs = new List<Tensor>();
        while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
            inputs.Add(ReadInput(ref reader, $"inputs[{inputs.Count}]", bodyLength));
        return inputs;
    }

    static Tensor ReadInput(ref Utf8JsonReader reader, string path, int bodyLength)
    {
        if (reader.TokenType != JsonTokenType.StartObject) throw Bad($"{path} must be an object with name, shape, datatype and data");
        string? name = null, datatype = null;
        long[]? shape = null;
        var data = default(Utf8JsonReader);
        bool hasData = false;
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            string property = reader.GetString()!;
            reader.Read();
            switch (property)
            {
                case "name":
                    if (reader.TokenType != JsonTokenType.String) throw Bad($"{path}.name must be a string");
                    name = reader.GetString();
                    break;
                case "datatype":
                    if (reader.TokenType != JsonTokenType.String) throw Bad($"{path}.datatype must be a string");
                    datatype = reader.GetString();
                    break;
                case "shape":
                    shape = ReadShape(ref reader, path);
                    break;
                case "data":
                    // The data may come before the datatype and shape that say how to read it: remember
                    // where it starts and read it once the whole tensor object has been seen.
                    data = reader;
                    hasData = true;
                    reader.Skip();
                    break;
                default:
                    reader.Skip();
                    break;
            }
        }
        if (string.IsNullOrEmpty(name)) throw Bad($"{path}.name is required");
        path = $"input '{name}'";
        if (datatype is null) throw Bad($"{path}: datatype is required");
        var type = TensorDataTypes.FromProtocolName(datatype) ?? throw Bad($"{path}: datatype '{datatype}' is not supported; use one of {TensorDataTypes.Supported}");
        if (shape is null) throw Bad($"{path}: shape is required");
        if (!hasData) throw Bad($"{path}: data is required");
        long count = Tensor.ElementCount(shape);
        // Each element takes at least two bytes of JSON ("0,"), so a larger shape cannot be honest.
        if (count > bodyLength / 2 + 1) throw Bad($"{path}: shape {Tensor.FormatShape(shape)} holds {count} elements, more than a {bodyLength}-byte body can carry");
        return new Tensor(name, type, shape, ReadData(ref data, type, count, shape, path));
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

    /// <summary>Reads flat or nested (row-major) data into a typed array of exactly <paramref name="count"/> elements.</summary>
    static Array ReadData(ref Utf8JsonReader reader, TensorDataType type, long count, long[] shape, string path)
    {
        if (reader.TokenType != JsonTokenType.StartArray) throw Bad($"{path}: data must be an array");
        var values = type.NewArray(count);
        long index = 0;
        int depth = 0;
        do
        {
            switch (reader.TokenType)
            {
                case JsonTokenType.StartArray: depth++; break;
                case JsonTokenType.EndArray: depth--; break;
                case JsonTokenType.Number:
                    if (index >= count) throw Bad($"{path}: data has more than the {count} elements of shape {Tensor.FormatShape(shape)}");
                    if (!Store(ref reader, type, values, index)) throw Bad($"{path}: data element {index} is not a valid {type.ToProtocolName()} value");
                    index++;
                    break;
                default:
                    throw Bad($"{path}: data element {index} is not a number");
            }
        } while (depth > 0 && reader.Read());
        if (index != count) throw Bad($"{path}: data has {index} elements, shape {Tensor.FormatShape(shape)} needs {count}");
        return values;
    }

    static bool Store(ref Utf8JsonReader reader, TensorDataType type, Array values, long index)
    {
        switch (type)
        {
            case TensorDataType.Fp32:
                if (!reader.TryGetSingle(out float f) || !float.IsFinite(f)) return false;
                ((float[])values)[index] = f;
                return true;
            case TensorDataType.Fp64:
                if (!reader.TryGetDouble(out double d) || !double.IsFinite(d)) return false;
                ((double[])values)[index] = d;
                return true;
            case TensorDataType.Int32:
                if (!reader.TryGetInt32(out int i)) return false;
                ((int[])values)[index] = i;
                return true;
            case TensorDataType.Int64:
                if (!reader.TryGetInt64(out long l)) return false;
                ((long[])values)[index] = l;
                return true;
            default:
                return false;
        }
    }

    static List<string> ReadRequestedOutputs(ref Utf8JsonReader reader)
    {
        if (reader.TokenType != JsonTokenType.StartArray) throw Bad("'outputs' must be an array of objects with a name");
        var names = new List<string>();
        while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
        {
            if (reader.TokenType != JsonTokenType.StartObject) throw Bad($"outputs[{names.Count}] must be an object with a name");
            string? name = null;
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                string property = reader.GetString()!;
                reader.Read();
                if (property == "name" && reader.TokenType == JsonTokenType.String) name = reader.GetString();
                else reader.Skip();
            }
            names.Add(string.IsNullOrEmpty(name) ? throw Bad($"outputs[{names.Count}].name is required") : name);
        }
        return names;
    }

    static ProtocolException Bad(string message) => new(StatusCodes.Status400BadRequest, message);
}
