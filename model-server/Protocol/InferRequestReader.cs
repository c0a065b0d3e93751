using System.Text.Json;

namespace Adaptive.ModelServer.Protocol;

/// <summary>
/// Reads an Open Inference Protocol (KServe v2) inference request in one pass, straight into typed
/// arrays. Supports the binary tensor data extension (Triton, KServe): when the body starts with a JSON
/// header of <c>Inference-Header-Content-Length</c> bytes, inputs whose parameters give a
/// <c>binary_data_size</c> take their raw bytes, in order, from what follows the header. Reading the header
/// alone gives those inputs' arrays, so that the bytes after it can go into them without another copy.
/// Every refusal is a 400 whose message names the offending field. Each input is checked against the
/// model's <see cref="InputContract"/> as soon as its name, datatype and shape are known, before its array
/// is taken: a request's tensor memory is never more than the model's inputs at the max batch size.
/// </summary>
public static class InferRequestReader
{
    public const string HeaderLengthHeader = "Inference-Header-Content-Length";
    const int MaxDepth = 32;

    /// <summary>The JSON header's length from the request's <c>Inference-Header-Content-Length</c>; null when absent.</summary>
    public static int? HeaderLength(HttpRequest request)
    {
        if (!request.Headers.TryGetValue(HeaderLengthHeader, out var value)) return null;
        return int.TryParse(value, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int length)
            ? length
            : throw Bad($"{HeaderLengthHeader} must be a non-negative integer, got '{value}'");
    }

    /// <summary>An all-JSON request body; its tensors' arrays come from <paramref name="arrays"/>.</summary>
    public static InferRequest Parse(ReadOnlySpan<byte> json, TensorArrayPool arrays, InputContract contract) => ParseHeader(json, binaryBytes: 0, arrays, contract).Request;

    /// <summary>
    /// The JSON header of a request whose binary data, <paramref name="binaryBytes"/> at most, follows it.
    /// The inputs that take binary data come back in <see cref="RequestHeader.BinaryInputs"/>, in the
    /// order of their bytes, with arrays of the claimed size that the caller must fill. Every tensor's
    /// array comes from <paramref name="arrays"/>.
    /// </summary>
    public static RequestHeader ParseHeader(ReadOnlySpan<byte> json, long binaryBytes, TensorArrayPool arrays, InputContract contract)
    {
        var parse = new ParseState(binaryBytes, arrays, contract);
        var reader = new Utf8JsonReader(json, new JsonReaderOptions { MaxDepth = MaxDepth });
        try
        {
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject) throw Bad("the request body must be a JSON object");
            string? id = null;
            List<Tensor>? inputs = null;
            List<RequestedOutput>? outputs = null;
            bool binaryOutput = false;
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
                        inputs = ReadInputs(ref reader, json.Length, parse);
                        break;
                    case "outputs":
                        outputs = ReadRequestedOutputs(ref reader);
                        break;
                    case "parameters":
                        binaryOutput = ReadBoolParameter(ref reader, "binary_data_output", "parameters") ?? false;
                        break;
                    default:
                        reader.Skip(); // extensions this server does not use
                        break;
                }
            }
            if (inputs is null || inputs.Count == 0) throw Bad("'inputs' is required and must list at least one tensor");
            return new RequestHeader(new InferRequest(id, inputs, outputs, binaryOutput), parse.BinaryInputs);
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

    /// <summary>
    /// A parsed header and what the bytes after it must fill: <see cref="Unclaimed"/> and <see cref="TooShort"/>
    /// are the 400s for a body that carries more or less than that.
    /// </summary>
    public sealed record RequestHeader(InferRequest Request, IReadOnlyList<BinaryInput> BinaryInputs)
    {
        public static ProtocolException Unclaimed(long bytes) => Bad($"{bytes} bytes of binary data follow the header that no input's binary_data_size claims");

        public static ProtocolException TooShort(BinaryInput input, long received) =>
            Bad($"input '{input.Tensor.Name}': binary_data_size is {input.Size} bytes, but only {received} bytes of binary data are left");
    }

    /// <summary>An input whose <paramref name="Size"/> bytes follow the header: its raw elements, or for BYTES its encoded elements.</summary>
    public sealed record BinaryInput(Tensor Tensor, long Size);

    /// <summary>One request's parse: where its arrays come from, the inputs that take binary data, and how many of the bytes after the header they claim.</summary>
    sealed class ParseState(long binaryBytes, TensorArrayPool arrays, InputContract contract)
    {
        public readonly TensorArrayPool Arrays = arrays;
        public readonly InputContract Contract = contract;
        public readonly List<BinaryInput> BinaryInputs = [];
        public long BinaryClaimed;
        public long BinaryRemaining => binaryBytes - BinaryClaimed;
    }

    static List<Tensor> ReadInputs(ref Utf8JsonReader reader, int jsonLength, ParseState parse)
    {
        if (reader.TokenType != JsonTokenType.StartArray) throw Bad("'inputs' must be an array of tensors");
        var inputs = new List<Tensor>();
        while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
            inputs.Add(ReadInput(ref reader, $"inputs[{inputs.Count}]", jsonLength, parse));
        return inputs;
    }

    static Tensor ReadInput(ref Utf8JsonReader reader, string path, int jsonLength, ParseState parse)
    {
        if (reader.TokenType != JsonTokenType.StartObject) throw Bad($"{path} must be an object with name, shape, datatype and data");
        string? name = null, datatype = null;
        long[]? shape = null;
        var data = default(Utf8JsonReader);
        bool hasData = false;
        long? binarySize = null;
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
                case "parameters":
                    binarySize = ReadBinarySize(ref reader, path);
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
        long count = ElementCount(shape, path);
        parse.Contract.Check(name, type, shape);
        if (binarySize is { } size)
        {
            if (hasData) throw Bad($"{path}: give either data or parameters.binary_data_size, not both");
            if (type.HasFixedSize() && size != count * type.ElementSize())
                throw Bad($"{path}: binary_data_size is {size} bytes, shape {Tensor.FormatShape(shape)} of {type.ToProtocolName()} needs {count * type.ElementSize()}");
            if (!type.HasFixedSize() && size < 4 * count)
                throw Bad($"{path}: binary_data_size is {size} bytes, too few for the {count} elements of shape {Tensor.FormatShape(shape)} (4 bytes of length each)");
            if (size > parse.BinaryRemaining)
                throw Bad($"{path}: binary_data_size is {size} bytes, but only {parse.BinaryRemaining} bytes of binary data are left");
            parse.BinaryClaimed += size;
            var tensor = new Tensor(name, type, shape, parse.Arrays.Rent(type, count));
            parse.BinaryInputs.Add(new BinaryInput(tensor, size));
            return tensor;
        }
        if (!hasData) throw Bad($"{path}: data is required");
        // Each element takes at least two bytes of JSON ("0,"), so a larger shape cannot be honest.
        if (count > jsonLength / 2 + 1) throw Bad($"{path}: shape {Tensor.FormatShape(shape)} holds {count} elements, more than a {jsonLength}-byte body can carry");
        return new Tensor(name, type, shape, ReadData(ref data, type, parse.Arrays.Rent(type, count), shape, path));
    }

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

    /// <summary>Reads flat or nested (row-major) data into <paramref name="values"/>, which it must fill exactly.</summary>
    static Array ReadData(ref Utf8JsonReader reader, TensorDataType type, Array values, long[] shape, string path)
    {
        if (reader.TokenType != JsonTokenType.StartArray) throw Bad($"{path}: data must be an array");
        long count = values.LongLength;
        long index = 0;
        int depth = 0;
        do
        {
            switch (reader.TokenType)
            {
                case JsonTokenType.StartArray: depth++; break;
                case JsonTokenType.EndArray: depth--; break;
                case var token when token == ElementToken(type) || (type == TensorDataType.Bool && token == JsonTokenType.False):
                    if (index >= count) throw Bad($"{path}: data has more than the {count} elements of shape {Tensor.FormatShape(shape)}");
                    if (!Store(ref reader, type, values, index)) throw Bad($"{path}: data element {index} is not a valid {type.ToProtocolName()} value");
                    index++;
                    break;
                default:
                    throw Bad($"{path}: data element {index} is not a {type switch { TensorDataType.Bool => "boolean", TensorDataType.Bytes => "string", _ => "number" }}");
            }
        } while (depth > 0 && reader.Read());
        if (index != count) throw Bad($"{path}: data has {index} elements, shape {Tensor.FormatShape(shape)} needs {count}");
        return values;
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

    static ProtocolException Bad(string message) => new(StatusCodes.Status400BadRequest, message);
}
