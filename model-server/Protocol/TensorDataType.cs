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

    public const string Supported = "FP32, FP64, INT32, INT64";

    /// <summary>
    /// An array of <paramref name="length"/> elements, not zeroed: every caller writes all of them before
    /// use, and zeroing a 600 KB image costs time.
    /// </summary>
    public static Array NewArray(this TensorDataType type, long length) => type switch
    {
        TensorDataType.Fp32 => GC.AllocateUninitializedArray<float>(checked((int)length)),
        TensorDataType.Fp64 => GC.AllocateUninitializedArray<double>(checked((int)length)),
        TensorDataType.Int32 => GC.AllocateUninitializedArray<int>(checked((int)length)),
        TensorDataType.Int64 => GC.AllocateUninitializedArray<long>(checked((int)length)),
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, null),
    };
}
