using System.Buffers;
using System.Text.Json;

namespace Adaptive.ModelServer.Protocol;

/// <summary>
/// Reads one Open Inference Protocol (KServe v2) inference request as its body arrives, piece by piece
/// (<see cref="Feed"/>), straight into typed arrays: an input's <c>data</c> goes into its tensor's array one
/// JSON number at a time, so the body's text is never held whole. Only when <c>data</c> comes before the
/// name, datatype or shape that say how to read it is its text kept (in native memory) until they are known.
/// Each input is checked against the model's <see cref="InputContract"/> before its array is taken: a
/// request's tensor memory is never more than the model's inputs at the max batch size.
/// Supports the binary tensor data extension (Triton, KServe): when the body starts with a JSON header of
/// <c>Inference-Header-Content-Length</c> bytes, inputs whose parameters give a <c>binary_data_size</c> take
/// their raw bytes, in order, from what follows the header; reading the header gives those inputs' arrays,
/// so that the bytes after it can go into them without another copy.
/// Every refusal is a 400 whose message names the offending field. Arrays taken for a request that is then
/// refused go back to the pool when the reader is disposed.
/// </summary>
public sealed partial class InferRequestReader : IDisposable
{
    public const string HeaderLengthHeader = "Inference-Header-Content-Length";
    /// <summary>
    /// The longest single JSON token (in practice a BYTES element as a string) a streamed body may hold: the
    /// request pipe stops filling while one token is incomplete, so a longer one could never arrive.
    /// Larger BYTES elements go in the binary data extension.
    /// </summary>
    public const int MaxTokenBytes = 256 * 1024;
    static readonly JsonReaderOptions Options = new() { MaxDepth = 32 };

    /// <summary>Where in the request the next token is.</summary>
    enum Place { BeforeRequest, Request, Inputs, Input, AfterRequest }

    readonly long bodyBytes;
    readonly long binaryBytes;
    readonly TensorArrayPool arrays;
    readonly InputContract contract;
    JsonReaderState json = new(Options);
    Place place = Place.BeforeRequest;
    /// <summary>The property whose value the next token starts.</summary>
    string? property;
    readonly HashSet<string> requestKeys = [];

    string? id;
    List<Tensor>? inputs;
    List<RequestedOutput>? outputs;
    bool binaryOutput;
    readonly List<BinaryInput> binaryInputs = [];
    long binaryClaimed;
    bool finished;

    /// <summary>The input whose object is being read.</summary>
    InputFields? input;
    /// <summary>A value kept whole until it ends (or skipped, when <see cref="CapturedValue.Keep"/> is false).</summary>
    CapturedValue? captured;

    /// <param name="bodyBytes">The body's length (or the most it may be): a shape with more elements than it can carry is refused before its array is taken.</param>
    /// <param name="binaryBytes">The bytes of binary data that follow the JSON (0 for an all-JSON body).</param>
    public InferRequestReader(long bodyBytes, long binaryBytes, TensorArrayPool arrays, InputContract contract)
    {
        this.bodyBytes = bodyBytes;
        this.binaryBytes = binaryBytes;
        this.arrays = arrays;
        this.contract = contract;
    }

    /// <summary>
    /// Reads the JSON tokens of the next piece of the body, <paramref name="isLast"/> when nothing follows it,
    /// and returns how far it read: the caller gives the rest (an incomplete token) again with what comes next.
    /// </summary>
    public SequencePosition Feed(ReadOnlySequence<byte> piece, bool isLast)
    {
        var reader = new Utf8JsonReader(piece, isLast, json);
        try
        {
            long capturedFrom = 0; // a value captured across pieces continues from this piece's start
            while (reader.Read())
            {
                if (captured is not null)
                {
                    if (!captured.EndsAt(ref reader)) continue;
                    captured.Append(piece.Slice(capturedFrom, reader.BytesConsumed - capturedFrom));
                    var value = captured;
                    captured = null;
                    using (value) ReadCaptured(value);
                    continue;
                }
                if (input?.Data is { } data)
                {
                    if (data.Take(ref reader)) (input.Values, input.Data) = (data.Values, null);
                    continue;
                }
                Take(ref reader);
                if (captured is not null) capturedFrom = reader.TokenStartIndex;
            }
            captured?.Append(piece.Slice(capturedFrom, reader.BytesConsumed - capturedFrom));
        }
        catch (JsonException e)
        {
            throw Bad($"malformed JSON: {e.Message}");
        }
        catch (InvalidOperationException e)
        {
            throw Bad($"malformed JSON: {e.Message}");
        }
        if (piece.Length - reader.BytesConsumed > MaxTokenBytes)
            throw Bad($"a JSON token is longer than {MaxTokenBytes} bytes; send large BYTES elements with the binary data extension");
        json = reader.CurrentState;
        return piece.GetPosition(reader.BytesConsumed);
    }

    /// <summary>
    /// The request, once the whole body has been fed. The inputs that take binary data come back in
    /// <see cref="RequestHeader.BinaryInputs"/>, in the order of their bytes, with arrays of the claimed size
    /// that the caller must fill.
    /// </summary>
    public RequestHeader Finish()
    {
        if (place == Place.BeforeRequest) throw Bad("the request body must be a JSON object");
        if (place != Place.AfterRequest) throw Bad("malformed JSON: the body ends inside the request");
        if (inputs is null || inputs.Count == 0) throw Bad("'inputs' is required and must list at least one tensor");
        finished = true;
        return new RequestHeader(new InferRequest(id, inputs, outputs, binaryOutput), binaryInputs);
    }

    /// <summary>A whole request in one piece (a binary request's JSON header).</summary>
    public static RequestHeader Read(byte[] json, long binaryBytes, TensorArrayPool arrays, InputContract contract)
    {
        using var reader = new InferRequestReader(json.Length, binaryBytes, arrays, contract);
        reader.Feed(new ReadOnlySequence<byte>(json), isLast: true);
        return reader.Finish();
    }

    /// <summary>
    /// A whole request body already in memory: all JSON, or with the binary data extension (<paramref name="headerLength"/>
    /// bytes of JSON, then each binary input's bytes in turn, which must fill them exactly).
    /// </summary>
    public static InferRequest ReadBody(byte[] body, int? headerLength, TensorArrayPool arrays, InputContract contract)
    {
        if (headerLength is not { } length)
        {
            using var reader = new InferRequestReader(body.Length, binaryBytes: 0, arrays, contract);
            reader.Feed(new ReadOnlySequence<byte>(body), isLast: true);
            return reader.Finish().Request;
        }
        if (length < 0 || length > body.Length) throw Bad($"{HeaderLengthHeader} is {length}, but the body has {body.Length} bytes");
        var parsed = Read(body[..length], body.Length - length, arrays, contract);
        try
        {
            int at = length;
            foreach (var input in parsed.BinaryInputs)
            {
                if (input.Size > body.Length - at) throw RequestHeader.TooShort(input, body.Length - at);
                var bytes = body.AsSpan(at, (int)input.Size);
                if (input.Tensor.DataType.HasFixedSize()) bytes.CopyTo(Tensor.BytesOf(input.Tensor.Data));
                else BytesElements.Decode(bytes, (byte[][])input.Tensor.Data, input.Tensor.Name);
                at += (int)input.Size;
            }
            if (at < body.Length) throw RequestHeader.Unclaimed(body.Length - at);
        }
        catch
        {
            arrays.Return(parsed.Request);
            throw;
        }
        return parsed.Request;
    }

    /// <summary>One token of the request's structure (not inside a captured value or an input's data).</summary>
    void Take(ref Utf8JsonReader reader)
    {
        var token = reader.TokenType;
        switch (place)
        {
            case Place.BeforeRequest:
                if (token != JsonTokenType.StartObject) throw Bad("the request body must be a JSON object");
                place = Place.Request;
                break;
            case Place.Request or Place.Input when token == JsonTokenType.PropertyName:
                property = reader.GetString()!;
                // A key given twice has no meaning the protocol defines: refused rather than one of them taken.
                if (!(place == Place.Request ? requestKeys : input!.Keys).Add(property))
                    throw Bad(place == Place.Request ? $"'{property}' is given more than once" : $"{input!.Path}.{property} is given more than once");
                break;
            case Place.Request when token == JsonTokenType.EndObject:
                place = Place.AfterRequest;
                break;
            case Place.Request when property == "inputs":
                if (token != JsonTokenType.StartArray) throw Bad("'inputs' must be an array of tensors");
                inputs = [];
                place = Place.Inputs;
                break;
            case Place.Inputs when token == JsonTokenType.EndArray:
                place = Place.Request;
                break;
            case Place.Inputs:
                string path = $"inputs[{inputs!.Count}]";
                if (token != JsonTokenType.StartObject) throw Bad($"{path} must be an object with name, shape, datatype and data");
                input = new InputFields(path);
                place = Place.Input;
                break;
            case Place.Input when token == JsonTokenType.EndObject:
                inputs!.Add(FinishInput(input!));
                input = null;
                place = Place.Inputs;
                break;
            case Place.Input when property == "data":
                StartData(ref reader, input!);
                break;
            default: // a property's value: read now if it is one token, else kept whole until it ends
                bool keep = place == Place.Request ? property is "id" or "outputs" or "parameters" : property is "name" or "datatype" or "shape" or "parameters";
                if (token is JsonTokenType.StartObject or JsonTokenType.StartArray) captured = new CapturedValue(place, property!, keep, reader.CurrentDepth);
                else if (keep) ReadValue(ref reader, place, property!);
                break;
        }
    }

    /// <summary>
    /// The start of an input's data: read into the tensor's array as it comes when the input's name, datatype
    /// and shape are known and it is not binary, else kept whole until they are.
    /// </summary>
    void StartData(ref Utf8JsonReader reader, InputFields fields)
    {
        fields.HasData = true;
        // Checked before the shape is: a number in place of the array is what is wrong, whatever the shape says.
        if (reader.TokenType != JsonTokenType.StartArray)
            throw Bad($"{(string.IsNullOrEmpty(fields.Name) ? fields.Path : $"input '{fields.Name}'")}: data must be an array");
        if (fields.Name is null || fields.DataType is null || fields.Shape is null || fields.BinarySize is not null)
        {
            captured = new CapturedValue(Place.Input, "data", keep: true, reader.CurrentDepth);
            return;
        }
        var declared = Declare(fields);
        fields.Data = new TensorDataReader(declared.Type, Rent(declared.Type, declared.Count), fields.Shape, declared.Path);
        fields.Data.Take(ref reader); // the opening bracket, or a 400 when the data is not an array
    }

    /// <summary>A captured value, once it has ended: data kept until its input said how to read it, or a property's value.</summary>
    void ReadCaptured(CapturedValue value)
    {
        if (!value.Keep) return;
        var reader = new Utf8JsonReader(value.Bytes.Span, Options);
        reader.Read();
        if (value.Property == "data" && value.Place == Place.Input) input!.CapturedData = value.TakeBytes();
        else ReadValue(ref reader, value.Place, value.Property);
    }

    /// <summary>A property's value, the reader at its first token.</summary>
    void ReadValue(ref Utf8JsonReader reader, Place at, string name)
    {
        if (at == Place.Request)
        {
            switch (name)
            {
                case "id":
                    if (reader.TokenType is not (JsonTokenType.String or JsonTokenType.Null)) throw Bad("'id' must be a string");
                    id = reader.GetString();
                    break;
                case "outputs":
                    outputs = ReadRequestedOutputs(ref reader);
                    break;
                case "parameters":
                    binaryOutput = ReadBoolParameter(ref reader, "binary_data_output", "parameters") ?? false;
                    break;
            }
            return;
        }
        var fields = input!;
        switch (name)
        {
            case "name":
                if (reader.TokenType != JsonTokenType.String) throw Bad($"{fields.Path}.name must be a string");
                fields.Name = reader.GetString();
                break;
            case "datatype":
                if (reader.TokenType != JsonTokenType.String) throw Bad($"{fields.Path}.datatype must be a string");
                fields.DataType = reader.GetString();
                break;
            case "shape":
                fields.Shape = ReadShape(ref reader, fields.Path);
                break;
            case "parameters":
                fields.BinarySize = ReadBinarySize(ref reader, fields.Path);
                break;
        }
    }

    /// <summary>An input's name, datatype and shape, checked against the model: what its array needs.</summary>
    (string Name, TensorDataType Type, long Count, string Path) Declare(InputFields fields)
    {
        if (string.IsNullOrEmpty(fields.Name)) throw Bad($"{fields.Path}.name is required");
        string path = $"input '{fields.Name}'";
        if (fields.DataType is null) throw Bad($"{path}: datatype is required");
        var type = TensorDataTypes.FromProtocolName(fields.DataType) ?? throw Bad($"{path}: datatype '{fields.DataType}' is not supported; use one of {TensorDataTypes.Supported}");
        if (fields.Shape is not { } shape) throw Bad($"{path}: shape is required");
        long count = ElementCount(shape, path);
        contract.Check(fields.Name, type, shape);
        // Each element takes at least two bytes of JSON ("0,"), so a larger shape cannot be honest.
        if (fields.HasData && fields.BinarySize is null && count > bodyBytes / 2 + 1)
            throw Bad($"{path}: shape {Tensor.FormatShape(shape)} holds {count} elements, more than a {bodyBytes}-byte body can carry");
        return (fields.Name, type, count, path);
    }

    Tensor FinishInput(InputFields fields)
    {
        var declared = Declare(fields);
        var shape = fields.Shape!;
        string path = declared.Path;
        if (fields.BinarySize is { } size)
        {
            if (fields.HasData) throw Bad($"{path}: give either data or parameters.binary_data_size, not both");
            var type = declared.Type;
            if (type.HasFixedSize() && size != declared.Count * type.ElementSize())
                throw Bad($"{path}: binary_data_size is {size} bytes, shape {Tensor.FormatShape(shape)} of {type.ToProtocolName()} needs {declared.Count * type.ElementSize()}");
            if (!type.HasFixedSize() && size < 4 * declared.Count)
                throw Bad($"{path}: binary_data_size is {size} bytes, too few for the {declared.Count} elements of shape {Tensor.FormatShape(shape)} (4 bytes of length each)");
            if (size > binaryBytes - binaryClaimed)
                throw Bad($"{path}: binary_data_size is {size} bytes, but only {binaryBytes - binaryClaimed} bytes of binary data are left");
            binaryClaimed += size;
            var tensor = new Tensor(declared.Name, type, shape, Rent(type, declared.Count));
            binaryInputs.Add(new BinaryInput(tensor, size));
            return tensor;
        }
        if (!fields.HasData) throw Bad($"{path}: data is required");
        if (fields.CapturedData is { } text)
        {
            using (text)
            {
                var data = new TensorDataReader(declared.Type, Rent(declared.Type, declared.Count), shape, path);
                var reader = new Utf8JsonReader(text.Span, Options);
                while (reader.Read() && !data.Take(ref reader)) { }
                return new Tensor(declared.Name, declared.Type, shape, data.Values);
            }
        }
        return new Tensor(declared.Name, declared.Type, shape, fields.Values!);
    }

    readonly List<(TensorDataType Type, Array Array)> rented = [];

    Array Rent(TensorDataType type, long count)
    {
        var array = arrays.Rent(type, count);
        rented.Add((type, array));
        return array;
    }

    /// <summary>Frees what was kept of the body and, for a request that was refused, gives its arrays back.</summary>
    public void Dispose()
    {
        captured?.Dispose();
        input?.CapturedData?.Dispose();
        if (!finished)
            foreach (var (type, array) in rented) arrays.Return(type, array);
        rented.Clear();
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

    /// <summary>What has been read of one input object.</summary>
    sealed class InputFields(string path)
    {
        public readonly string Path = path;
        public readonly HashSet<string> Keys = [];
        public string? Name, DataType;
        public long[]? Shape;
        public long? BinarySize;
        public bool HasData;
        /// <summary>Its data being read into the tensor's array; null once read, into <see cref="Values"/>.</summary>
        public TensorDataReader? Data;
        public Array? Values;
        /// <summary>Its data's text, when it came before what says how to read it.</summary>
        public NativeBuffer? CapturedData;
    }

    /// <summary>
    /// A JSON object or array read whole before it is used: it ends at the closing token at its own depth.
    /// <paramref name="keep"/> false skips it, keeping no bytes.
    /// </summary>
    sealed class CapturedValue(Place place, string property, bool keep, int depth) : IDisposable
    {
        public Place Place { get; } = place;
        public string Property { get; } = property;
        public bool Keep { get; } = keep;

        public NativeBuffer Bytes { get; private set; } = new();

        public bool EndsAt(ref Utf8JsonReader reader) =>
            reader.TokenType is JsonTokenType.EndObject or JsonTokenType.EndArray && reader.CurrentDepth == depth;

        public void Append(ReadOnlySequence<byte> bytes)
        {
            if (Keep) Bytes.Append(bytes);
        }

        /// <summary>The bytes, now the caller's to dispose.</summary>
        public NativeBuffer TakeBytes()
        {
            var bytes = Bytes;
            Bytes = new();
            return bytes;
        }

        public void Dispose() => Bytes.Dispose();
    }
}
