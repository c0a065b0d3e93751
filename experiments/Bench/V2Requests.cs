using System.Runtime.InteropServices;
using System.Text.Json;

namespace Adaptive.Experiments.Bench;

/// <summary>Open Inference Protocol request bodies for one FP32 input, in JSON or with the binary tensor extension.</summary>
public static class V2Requests
{
    public static byte[] Json(string inputName, long[] shape, float[] data) =>
        JsonSerializer.SerializeToUtf8Bytes(new { inputs = new[] { new { name = inputName, shape, datatype = "FP32", data } } });

    /// <summary>The JSON header of a binary request; its length goes in the <c>Inference-Header-Content-Length</c> header.</summary>
    public static byte[] BinaryHeader(string inputName, long[] shape, float[] data) => JsonSerializer.SerializeToUtf8Bytes(new
    {
        inputs = new[] { new { name = inputName, shape, datatype = "FP32", parameters = new { binary_data_size = data.Length * sizeof(float) } } },
        parameters = new { binary_data_output = true },
    });

    /// <summary>The header followed by the tensor's raw bytes.</summary>
    public static byte[] Binary(string inputName, long[] shape, float[] data) =>
        [.. BinaryHeader(inputName, shape, data), .. MemoryMarshal.AsBytes(data.AsSpan())];
}
