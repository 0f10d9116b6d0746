/* Post-training quantization (`qat ptq`): calibrate the observers of a qat_qmodel on training
 * batches in eval mode (train/calibrate.c), fix the qparams and evaluate the fake-quant model
 * (as its INT8 simulation, train/evaluate.c). */
#include "train.h"
#include <string.h>

qat_status qat_ptq_check_observer(const char *name, float percentile, float averaging_constant,
                                  qat_observer_kind *kind, qat_hist_method *method) {
    qat_status st = qat_observer_parse(name ? name : "minmax", kind, method);
    if (st) return st;
    if (*kind == QAT_OBS_HISTOGRAM && *method == QAT_HIST_PERCENTILE && !(percentile > 50 && percentile <= 100))
        return qat_fail(QAT_ERR_ARG, "ptq: --percentile %g is outside (50, 100]", (double)percentile);
    if (*kind == QAT_OBS_MOVING_AVG && !(averaging_constant > 0 && averaging_constant <= 1))
        return qat_fail(QAT_ERR_ARG, "ptq: --averaging-constant %g is outside (0, 1]", (double)averaging_constant);
    return QAT_OK;
}

qat_status qat_apply_float_choices(qat_qmodel *q, const char *layer_qconfig, const char *float_layers,
                                   const char *what) {
    qat_status st = layer_qconfig ? qat_qmodel_apply_layer_qconfig(q, layer_qconfig) : QAT_OK;
    if (!st && float_layers) st = qat_qmodel_apply_float_list(q, float_layers, what);
    return st;
}

void qat_ptq_opts_default(qat_ptq_opts *o) {
    memset(o, 0, sizeof *o);
    o->qconfig = "x86";
    o->observer = "minmax";
    o->percentile = 99.99f;
    o->averaging_constant = QAT_OBS_AVERAGING_CONSTANT;
    o->calib_batches = 32;
    o->batch = 128;
    o->eval_batch = QAT_EVAL_BATCH;
}

qat_status qat_ptq_run(const qat_ptq_opts *o, qat_eval_result *fp32, qat_eval_result *quant) {
    if (!o->ckpt || !o->data || !o->out)
        return qat_fail(QAT_ERR_ARG, "ptq: --ckpt, --data and --out are required");
    if (o->calib_batches < 1 || o->batch < 1)
        return qat_fail(QAT_ERR_ARG, "ptq: --calib-batches and --batch must be positive");
    qat_observer_kind obs;
    qat_hist_method method;
    qat_qconfig cfg;
    qat_status st;
    if ((st = qat_ptq_check_observer(o->observer, o->percentile, o->averaging_constant, &obs, &method)) ||
        (st = qat_qconfig_get(o->qconfig ? o->qconfig : "x86", &cfg)))
        return st;
    if (o->threads > 0) qat_set_threads(o->threads);
    qat_run run;
    if ((st = qat_checkpoint_load(o->ckpt, &run))) return st;
    qat_dataset *train = NULL, *test = NULL;
    qat_data_opts dopt;
    memset(&dopt, 0, sizeof dopt);
    dopt.val_split = o->val_split;
    dopt.seed = run.seed; /* the same ImageFolder split as training */
    if ((st = qat_dataset_open(o->data, &dopt, &train, &test))) goto done;
    qat_model *m = run.model;
    if (m->in_h != train->h || m->in_w != train->w || m->in_c != train->c ||
        m->nclasses != train->nclasses) {
        st = qat_fail(QAT_ERR_MISMATCH,
                      "%s: checkpoint expects %dx%dx%d images and %d classes, %s has %dx%dx%d and %d",
                      o->ckpt, m->in_h, m->in_w, m->in_c, m->nclasses, train->source, train->h,
                      train->w, train->c, train->nclasses);
        goto done;
    }
    if (run.has_qopt) qat_optim_free(&run.qopt);
    run.has_qopt = 0;
    qat_qmodel_free(run.qmodel); /* PTQ of a PTQ/QAT checkpoint re-calibrates its FP32 weights */
    run.qmodel = NULL;
    qat_progress p_fp = {o->on_event, o->event_user, "ptq: evaluating FP32"};
    qat_progress p_cal = {o->on_event, o->event_user, "ptq: calibrating"};
    qat_progress p_q = {o->on_event, o->event_user, "ptq: evaluating fake-quant"};
    /* the qmodel and its float layers first: a bad --layer-qconfig fails before any work */
    qat_qmodel *q = NULL;
    if ((st = qat_qmodel_create(m, &cfg, QAT_QMODEL_PTQ, obs, &q)) ||
        (st = qat_apply_float_choices(q, o->layer_qconfig, o->float_layers, "ptq: --float-layers"))) {
        qat_qmodel_free(q);
        goto done;
    }
    st = qat_run_evaluate(&run, test, o->eval_batch, fp32, &p_fp);
    run.qmodel = q;
    if (st) goto done;
    for (int i = 0; i < run.qmodel->npoints; i++) { /* the observer's settings, activations only */
        qat_qpoint *pt = &run.qmodel->points[i];
        if (pt->weight) continue;
        pt->fq.obs.method = method;
        pt->fq.obs.percentile = o->percentile;
        pt->fq.obs.averaging_constant = o->averaging_constant;
    }
    if ((st = qat_calibrate(&run, train, o->batch, o->calib_batches, &p_cal))) goto done;
    if ((st = qat_qmodel_freeze_observers(run.qmodel))) goto done;
    if (cfg.lsq && (st = qat_qmodel_lsq_start(run.qmodel))) goto done; /* same qparams, learnable */
    if ((st = qat_run_evaluate(&run, test, o->eval_batch, quant, &p_q))) goto done;
    /* The optimizer state of the FP32 run would only mislead a later --resume. */
    if (run.has_opt) qat_optim_free(&run.opt);
    run.has_opt = 0;
    st = qat_checkpoint_save(o->out, &run);
done:
    qat_dataset_free(train);
    qat_dataset_free(test);
    qat_run_free(&run);
    return st;
}

