# syntax=docker/dockerfile:1
# Images of Adaptive, one target each:
#   docker build --target operator          -t adaptive-operator .
#   docker build --target model-server      -t adaptive-server .
#   docker build --target model-server-zoo  -t adaptive-server:zoo .      # with the ResNet zoo in /models
#   docker build --target model-server-gpu  -t adaptive-server:gpu .      # ONNX Runtime's CUDA build, for GPU nodes
# The build restores and publishes exactly the projects CI builds (Release, linux-x64).

FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
WORKDIR /src
# Project files first, so that the restore layer is reused while only sources change.
COPY global.json Directory.Build.props Directory.Packages.props ./
COPY core/Adaptive.Core.csproj core/
COPY model-server/Adaptive.ModelServer.csproj model-server/
COPY operator/Adaptive.Operator.csproj operator/
COPY experiments/Adaptive.Experiments.csproj experiments/
RUN dotnet restore operator/Adaptive.Operator.csproj -r linux-x64 \
 && dotnet restore model-server/Adaptive.ModelServer.csproj -r linux-x64 \
 && dotnet restore experiments/Adaptive.Experiments.csproj -r linux-x64
COPY core/ core/
COPY model-server/ model-server/
COPY operator/ operator/
COPY experiments/ experiments/

FROM build AS publish-operator
RUN dotnet publish operator/Adaptive.Operator.csproj -c Release -r linux-x64 --self-contained false --no-restore -o /out

FROM build AS publish-model-server
RUN dotnet publish model-server/Adaptive.ModelServer.csproj -c Release -r linux-x64 --self-contained false --no-restore -o /out

# -p:Gpu=true swaps ONNX Runtime's CPU package for its CUDA build (restored here: 1.8 GB).
FROM build AS publish-model-server-gpu
RUN dotnet publish model-server/Adaptive.ModelServer.csproj -c Release -r linux-x64 --self-contained false -p:Gpu=true -o /out

FROM build AS zoo
RUN dotnet run --project experiments/Adaptive.Experiments.csproj -c Release -r linux-x64 --no-restore -- zoo --out /models

FROM mcr.microsoft.com/dotnet/aspnet:10.0 AS operator
WORKDIR /app
COPY --from=publish-operator /out .
USER 10001:10001
ENTRYPOINT ["dotnet", "adaptive-operator.dll"]

FROM mcr.microsoft.com/dotnet/aspnet:10.0 AS model-server
WORKDIR /app
COPY --from=publish-model-server /out .
USER 10001:10001
EXPOSE 8080 8081
ENTRYPOINT ["dotnet", "adaptive-server.dll"]
CMD ["serve"]

# ONNX Runtime 1.31's CUDA provider loads CUDA 13's libraries (libcublasLt.so.13) and cuDNN 9: NVIDIA's CUDA
# runtime image, with the ASP.NET Core runtime copied from Microsoft's and the libraries .NET needs on Ubuntu 24.04.
# Run it on a node with the NVIDIA driver and device plugin; started with --device cuda it exits where CUDA cannot run.
FROM nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04 AS model-server-gpu
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libicu74 libssl3t64 tzdata \
 && rm -rf /var/lib/apt/lists/*
COPY --from=mcr.microsoft.com/dotnet/aspnet:10.0 /usr/share/dotnet /usr/share/dotnet
RUN ln -s /usr/share/dotnet/dotnet /usr/bin/dotnet
WORKDIR /app
COPY --from=publish-model-server-gpu /out .
USER 10001:10001
EXPOSE 8080 8081
ENTRYPOINT ["dotnet", "adaptive-server.dll"]
CMD ["serve", "--device", "cuda"]

FROM model-server AS model-server-zoo
COPY --from=zoo /models /models
