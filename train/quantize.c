/* `qat quantize`: the accuracy-driven flow in one call — PTQ; QAT fine-tuning when PTQ loses
 * more than the allowed drop; convert; verify the INT8 model with the INT8 runtime. */
#include "rt_internal.h"
#include "train.h"
#include "container.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void qat_quantize_opts_default(qat_quantize_opts *o) {
    memset(o, 0, sizeof *o);
    o->qconfig = "x86";
    o->observer = "histogram";
    o->percentile = 99.99f;
    o->averaging_constant = QAT_OBS_AVERAGING_CONSTANT;
    o->backend = "auto";
    o->max_drop = 0.5f;
    o->qat_epochs = 3;
    o->calib_batches = 32;
    o->sensitivity_images = 1000;
}


/* The k layers whose weight left float brings the logits closest to FP32 (the sensitivity
 * analysis's "only float" KL, lowest first), comma-separated into r->float_layers. */
static qat_status choose_float_layers(const qat_quantize_opts *o, qat_quantize_report *r) {
    qat_sensitivity_opts so;
    qat_sensitivity_opts_default(&so);
    so.ckpt = o->ckpt, so.data = o->data, so.qconfig = o->qconfig, so.observer = o->observer;
    so.percentile = o->percentile, so.averaging_constant = o->averaging_constant;
    so.calib_batches = o->calib_batches, so.images = o->sensitivity_images;
    so.val_split = o->val_split, so.threads = o->threads;
    so.on_event = o->on_event, so.event_user = o->event_user;
    qat_sensitivity sens;
    qat_status st = qat_sensitivity_run(&so, &sens);
    if (st) return st;
    int *order = malloc((size_t)(sens.n > 0 ? sens.n : 1) * sizeof(int));
    if (!order) {
        qat_sensitivity_free(&sens);
        return qat_fail(QAT_ERR_NOMEM, "quantize: out of memory");
    }
    for (int i = 0; i < sens.n; i++) { /* insertion sort by KL, ties in model order */
        int j = i;
        while (j > 0 && sens.float_kl[order[j - 1]] > sens.float_kl[i]) order[j] = order[j - 1], j--;
        order[j] = i;
    }
    size_t used = 0;
    r->float_layers[0] = 0;
    for (int k = 0; k < o->allow_float && k < sens.n; k++) {
        int w = snprintf(r->float_layers + used, sizeof r->float_layers - used, "%s%s", k ? "," : "",
                         sens.names[order[k]]);
        if (w < 0 || used + (size_t)w >= sizeof r->float_layers) break;
        used += (size_t)w;
    }
    free(order);
    qat_sensitivity_free(&sens);
    return QAT_OK;
}

static qat_tensor *rt_fwd(void *net, qat_ctx *ctx, qat_tensor *x) {
    qat_rt *rt = net;
    qat_tensor *y = qat_tensor_2d(ctx, x->shape[0], qat_rt_nclasses(rt));
    return qat_rt_run(rt, x->data, x->shape[0], y->data) ? NULL : y;
}

static qat_tensor *run_fwd(void *net, qat_ctx *ctx, qat_tensor *x) { return qat_run_forward(net, ctx, x); }

/* Accuracy of the chosen checkpoint by the integer-exact simulation and of its INT8 model on
 * the runtime, with the per-image agreement of the two. */
static qat_status verify(const qat_quantize_opts *o, const char *ckpt, const qat_q8_model *m,
                         qat_quantize_report *r) {
    qat_run run;
    qat_status st = qat_checkpoint_load(ckpt, &run);
    if (st) return st;
    qat_data_opts dopt;
    memset(&dopt, 0, sizeof dopt);
    dopt.val_split = o->val_split;
    dopt.seed = run.seed;
    qat_dataset *train = NULL, *test = NULL;
    qat_rt *rt = NULL;
    float *ls = NULL, *li = NULL;
    if ((st = qat_dataset_open(o->data, &dopt, &train, &test))) goto done;
    int K = m->nclasses;
    ls = malloc((size_t)test->n * K * sizeof(float));
    li = malloc((size_t)test->n * K * sizeof(float));
    if (!ls || !li) {
        st = qat_fail(QAT_ERR_NOMEM, "quantize: out of memory");
        goto done;
    }
    qat_eval_result sim;
    qat_progress p_sim = {o->on_event, o->event_user, "verify: INT8 simulation"};
    qat_progress p_rt = {o->on_event, o->event_user, "verify: INT8 runtime"};
    if ((st = qat_evaluate_net(run_fwd, &run, test, run.mean, run.std, QAT_EVAL_BATCH, &sim, ls, &p_sim))) goto done;
    r->sim_accuracy = sim.accuracy;
    qat_rt_options ro;
    qat_rt_options_default(&ro);
    ro.batch = QAT_EVAL_BATCH;
    if (qat_rt_backend_parse(o->backend, &ro.backend)) {
        st = qat_fail(QAT_ERR_ARG, "quantize: unknown backend '%s' (auto, native, onednn, ref)", o->backend);
        goto done;
    }
    if ((st = qat_rt_from_model(m, &ro, &rt))) goto done;
    if ((st = qat_evaluate_net(rt_fwd, rt, test, m->mean, m->std, QAT_EVAL_BATCH, &r->int8, li, &p_rt))) goto done;
    r->agree = r->same_logits = 0;
    for (int i = 0; i < r->int8.n; i++) {
        const float *a = ls + (size_t)i * K, *b = li + (size_t)i * K;
        r->agree += qat_argmax(a, K) == qat_argmax(b, K);
        r->same_logits += !memcmp(a, b, (size_t)K * sizeof(float));
    }
done:
    free(ls), free(li);
    qat_rt_free(rt);
    qat_dataset_free(train);
    qat_dataset_free(test);
    qat_run_free(&run);
    return st;
}

static qat_status run_qat(const qat_quantize_opts *o, const char *dir, qat_quantize_report *r,
                          char *best, size_t cap) {
    qat_qat_opts qo;
    qat_qat_opts_default(&qo);
    qo.ckpt = o->ckpt;
    qo.qconfig = o->qconfig;
    qo.train.data = o->data;
    qo.train.out_dir = dir;
    qo.train.epochs = o->qat_epochs;
    qo.train.threads = o->threads;
    qo.train.val_split = o->val_split;
    qo.train.on_event = o->on_event;
    qo.train.event_user = o->event_user;
    qo.train.stop_at_accuracy = r->target;
    qo.layer_qconfig = o->layer_qconfig;
    qo.float_layers = r->float_ran ? r->float_layers : NULL;
    qat_status st = qat_qat_run(&qo);
    if (st || qat_dist_rank() != 0) return st; /* data-parallel: rank 0 goes on alone */
    snprintf(best, cap, "%s/best.ckpt", dir);
    qat_run run;
    if ((st = qat_checkpoint_load(best, &run))) return st;
    r->qat_epochs = run.epoch;
    qat_run_free(&run);
    r->qat_ran = 1;
    return qat_checkpoint_evaluate_progress(best, o->data, o->val_split, QAT_EVAL_BATCH, o->on_event,
                                            o->event_user, &r->qat);
}

static qat_status quantize_in(const qat_quantize_opts *o, qat_quantize_report *r, const char *dir);

qat_status qat_quantize_run(const qat_quantize_opts *o, qat_quantize_report *r) {
    memset(r, 0, sizeof *r);
    if (!o->ckpt || !o->data || !o->out) return qat_fail(QAT_ERR_ARG, "quantize: --ckpt, --data and -o are required");
    if (!(o->max_drop >= 0) || o->qat_epochs < 0 || o->allow_float < 0)
        return qat_fail(QAT_ERR_ARG, "quantize: --max-drop, --qat-epochs and --allow-float must be >= 0");
    if (o->allow_float > 0 && o->sensitivity_images < 1)
        return qat_fail(QAT_ERR_ARG, "quantize: --sensitivity-images must be positive");
    /* every name before any work: a bad --backend used to surface after PTQ and QAT */
    qat_rt_options ro;
    qat_qconfig cfg;
    qat_status st;
    if (qat_rt_backend_parse(o->backend, &ro.backend))
        return qat_fail(QAT_ERR_ARG, "quantize: unknown backend '%s' (auto, native, onednn, ref)", o->backend);
    if ((st = qat_qconfig_get(o->qconfig ? o->qconfig : "x86", &cfg))) return st;
    qat_observer_kind obs;
    qat_hist_method method;
    if ((st = qat_ptq_check_observer(o->observer, o->percentile, o->averaging_constant, &obs, &method))) return st;
    if (o->threads > 0) qat_set_threads(o->threads);
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", o->work_dir ? o->work_dir : o->out);
    if (!o->work_dir) strncat(dir, ".work", sizeof dir - strlen(dir) - 1);
    /* the output before any work: a device or FIFO is refused now, not after PTQ and QAT */
    char *target = NULL;
    if ((st = qat_output_target(o->out, &target))) return st;
    free(target);
    int made = mkdir(dir, 0777) == 0;
    if (!made && errno != EEXIST) return qat_fail(QAT_ERR_IO, "quantize: cannot create %s", dir);
    st = quantize_in(o, r, dir);
    if (st && made) rmdir(dir); /* a work directory of ours left empty by the failure goes */
    return st;
}

/* qat_quantize_run once the names are checked and the work directory exists. */
static qat_status quantize_in(const qat_quantize_opts *o, qat_quantize_report *r, const char *dir) {
    qat_status st;
    char ptq_path[1100], ptqf_path[1100], qat_dir[1100], best[1200];
    snprintf(ptq_path, sizeof ptq_path, "%s/ptq.ckpt", dir);
    snprintf(qat_dir, sizeof qat_dir, "%s/qat", dir);
    snprintf(ptqf_path, sizeof ptqf_path, "%s/ptq_float.ckpt", dir);

    qat_ptq_opts po;
    qat_ptq_opts_default(&po);
    po.ckpt = o->ckpt, po.data = o->data, po.out = ptq_path;
    po.qconfig = o->qconfig, po.observer = o->observer;
    po.calib_batches = o->calib_batches, po.threads = o->threads, po.val_split = o->val_split;
    po.on_event = o->on_event, po.event_user = o->event_user;
    po.percentile = o->percentile, po.averaging_constant = o->averaging_constant;
    po.layer_qconfig = o->layer_qconfig;
    if ((st = qat_ptq_run(&po, &r->fp32, &r->ptq))) return st;
    r->target = r->fp32.accuracy - o->max_drop / 100.0f;
    const char *chosen = ptq_path;
    r->chosen = "ptq";
    float chosen_acc = r->ptq.accuracy;
    if (r->ptq.accuracy < r->target && o->allow_float > 0) {
        /* the most sensitive layers in float, calibrated again: cheaper than QAT */
        if ((st = choose_float_layers(o, r))) return st;
        qat_eval_result fp32_again;
        po.out = ptqf_path;
        po.float_layers = r->float_layers;
        if ((st = qat_ptq_run(&po, &fp32_again, &r->ptq_float))) return st;
        r->float_ran = 1;
        if (r->ptq_float.accuracy > chosen_acc)
            chosen = ptqf_path, r->chosen = "ptq-float", chosen_acc = r->ptq_float.accuracy;
    }
    if (chosen_acc < r->target && o->qat_epochs > 0) {
        if ((st = run_qat(o, qat_dir, r, best, sizeof best))) return st;
        if (qat_dist_rank() != 0) return QAT_OK; /* rank 0 converts and verifies */
        if (r->qat.accuracy > chosen_acc) chosen = best, r->chosen = "qat";
    }
    qat_q8_model *m;
    if ((st = qat_convert_checkpoint(chosen, o->out, &m))) return st;
    st = verify(o, chosen, m, r);
    qat_q8_free(m);
    if (st) return st;
    struct stat sb;
    r->int8_bytes = stat(o->out, &sb) ? 0 : (int64_t)sb.st_size;
    qat_run run;
    if (!qat_checkpoint_load(o->ckpt, &run)) {
        r->fp32_bytes = (run.model->nparams + run.model->nbuffers) * (int64_t)sizeof(float);
        qat_run_free(&run);
    }
    r->met = r->int8.accuracy >= r->target;
    return QAT_OK;
}
