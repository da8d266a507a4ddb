# Diffusion priors: one training job per prior in config["priors"], on the
# training splits of every dataset, then a one-call denoising check.


rule train_prior:
    input:
        plan.train_files(),
    output:
        weights=layout.PRIOR,
        settings=f"{layout.PRIOR_DIR}/settings.yaml",
        log_csv=f"{layout.PRIOR_DIR}/train_log.csv",
        curve=report(
            f"{layout.PRIOR_DIR}/loss.png",
            caption="../report/loss.rst",
            category="Priors",
            labels={"prior": "{prior}"},
        ),
    log:
        f"{LOGS}/train/{{prior}}.log",
    benchmark:
        f"{LOGS}/benchmarks/train/{{prior}}.tsv"
    conda:
        "../envs/patchpnp.yaml"
    threads: lambda wc: prior_settings(wc.prior)["training"]["threads"]
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=lambda wc, attempt: 24 * 60 * attempt,
        gpu=lambda wc: gpus_for(prior_settings(wc.prior)["training"]["processes"]),
    params:
        rule="train_prior",
        settings=lambda wc: json.dumps(prior_settings(wc.prior)),
        launcher=lambda wc: launcher(prior_settings(wc.prior)["training"]["processes"]),
        device=config["device"],
        # The network and training code, which Snakemake does not track by itself.
        code=command_code("train"),
    shell:
        "PATCHPNP_RULE={params.rule} {params.launcher} train {input:q} --out-dir $(dirname {output.weights:q})"
        " --settings {params.settings:q} --threads {threads} --device {params.device}"
        " > {log} 2>&1"


rule denoise_check:
    input:
        weights=layout.PRIOR,
        data=plan.eval_files(),
    output:
        f"{layout.PRIOR_DIR}/denoise_check.csv",
    log:
        f"{LOGS}/denoise_check/{{prior}}.log",
    conda:
        "../envs/patchpnp.yaml"
    threads: INFER.get("threads", 1)
    resources:
        mem_mb=4000,
        runtime=30,
        gpu=gpus_for(1),
    params:
        rule="denoise_check",
        seed=config["seed"],
        device=config["device"],
        batch=INFER["batch_images"],
        code=command_code("denoise-check"),
    shell:
        "PATCHPNP_RULE={params.rule} patchpnp denoise-check {input.data:q} --prior {input.weights:q}"
        " --seed {params.seed} --output {output:q} --threads {threads}"
        " --batch {params.batch} --device {params.device} > {log} 2>&1"


rule priors:
    input:
        expand(layout.PRIOR, prior=list(config["priors"])),
        expand(f"{layout.PRIOR_DIR}/denoise_check.csv", prior=list(config["priors"])),
