namespace Adaptive.ModelServer.Protocol;

/// <summary>The tensor element types this server speaks, named as the Open Inference Protocol names them.</summary>
public enum TensorDataType { Fp32, Fp64, Int32, Int64 }

public static class TensorDataTypes
{
    public static string ToProtocolName(this TensorDataType type) => type switch
    {
        TensorDataType.Fp32 => "FP32",
        TensorDataType.Fp64 => "FP64",
        TensorDataType.Int32 => "INT32",
        TensorDataType.Int64 => "INT64",
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, null),
    };

    public static TensorDataType? FromProtocolName(string name) => name switch
    {
        "FP32" => TensorDataType.Fp32,
        "FP64" => TensorDataType.Fp64,
        "INT32" => TensorDataType.Int32,
        "INT64" => TensorDataType.Int64,
        _ => null,
    };

    public static int ElementSize(this TensorDataType type) => type is TensorDataType.Fp32 or TensorDataType.Int32 ? 4 : 8;

    /// <summary>A typed array copied from raw little-endian bytes (the binary data extension).</summary>
    public static Array FromBytes(this TensorDataType type, ReadOnlySpan<byte> bytes) => type switch
    {
        TensorDataType.Fp32 => System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(bytes).ToArray(),
        TensorDataType.Fp64 => System.Runtime.InteropServices.MemoryMarshal.Cast<byte, double>(bytes).ToArray(),
        TensorDataType.Int32 => System.Runtime.InteropServices.MemoryMarshal.Cast<byte, int>(bytes).ToArray(),
        TensorDataType.Int64 => System.Runtime.InteropServices.MemoryMarshal.Cast<byte, long>(bytes).ToArray(),
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, null),
    };

    public const string Supported = "FP32, FP64, INT32, INT64";

    public static Array NewArray(this TensorDataType type, long length) => type switch
    {
        TensorDataType.Fp32 => new float[length],
        TensorDataType.Fp64 => new double[length],
        TensorDataType.Int32 => new int[length],
        TensorDataType.Int64 => new long[length],
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, null),
    };
}
