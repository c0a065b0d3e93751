using System.Runtime.InteropServices;
using System.Text.Json;

namespace Adaptive.Experiments.Bench;

/// <summary>
/// Open Inference Protocol request bodies for one FP32 input, in JSON or with the binary tensor extension;
/// with <c>outputName</c>, they ask for that output by name after the inputs.
/// </summary>
public static class V2Requests
{
    public static byte[] Json(string inputName, long[] shape, float[] data, string? outputName = null) =>
        JsonSerializer.SerializeToUtf8Bytes(new { inputs = new[] { new { name = inputName, shape, datatype = "FP32", data } }, outputs = Outputs(outputName) }, Options);

    /// <summary>The JSON header of a binary request; its length goes in the <c>Inference-Header-Content-Length</c> header.</summary>
    public static byte[] BinaryHeader(string inputName, long[] shape, float[] data, string? outputName = null) => JsonSerializer.SerializeToUtf8Bytes(new
    {
        inputs = new[] { new { name = inputName, shape, datatype = "FP32", parameters = new { binary_data_size = data.Length * sizeof(float) } } },
        outputs = Outputs(outputName),
        parameters = new { binary_data_output = true },
    }, Options);

    /// <summary>The header followed by the tensor's raw bytes.</summary>
    public static byte[] Binary(string inputName, long[] shape, float[] data, string? outputName = null) =>
        [.. BinaryHeader(inputName, shape, data, outputName), .. MemoryMarshal.AsBytes(data.AsSpan())];

    static object[]? Outputs(string? outputName) => outputName is null ? null : [new { name = outputName }];

    static readonly JsonSerializerOptions Options = new() { DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull };
}
